//! Tests of the PKI module.

use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

use super::*;

fn test_sans() -> ServingSans {
    let mut sans = ServingSans::defaults(DEFAULT_FIRST_SERVICE_IP, &["skiff.example.com".into()]);
    sans.add_ip(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)));
    sans
}

fn read(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name)).expect("read test file")
}

fn mode(dir: &Path, name: &str) -> u32 {
    std::fs::metadata(dir.join(name))
        .expect("stat test file")
        .permissions()
        .mode()
        & 0o777
}

fn der(pem: &str) -> CertificateDer<'static> {
    parse_cert_chain(pem, "test").expect("parse PEM").remove(0)
}

/// Verifies `cert_pem` as a server certificate for `name` against `ca_pem`
/// with rustls's webpki verifier (signature chain, validity, EKU and SAN).
fn verify_server(ca_pem: &str, cert_pem: &str, name: ServerName<'_>) -> Result<(), rustls::Error> {
    let roots = Arc::new(root_store(ca_pem, "ca").expect("roots"));
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(roots, crypto_provider())
            .build()
            .expect("server verifier");
    verifier
        .verify_server_cert(&der(cert_pem), &[], &name, &[], UnixTime::now())
        .map(|_| ())
}

fn verify_client(ca_pem: &str, cert_pem: &str) -> Result<(), rustls::Error> {
    let roots = Arc::new(root_store(ca_pem, "ca").expect("roots"));
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots, crypto_provider())
            .build()
            .expect("client verifier");
    verifier
        .verify_client_cert(&der(cert_pem), &[], UnixTime::now())
        .map(|_| ())
}

const ALL_FILES: [&str; 10] = [
    files::SERVER_CA_CRT,
    files::SERVER_CA_KEY,
    files::CLIENT_CA_CRT,
    files::CLIENT_CA_KEY,
    files::SERVING_CRT,
    files::SERVING_KEY,
    files::ADMIN_CRT,
    files::ADMIN_KEY,
    files::SERVICE_KEY,
    files::SERVICE_PUB,
];

#[test]
fn creates_then_reuses_identical_files() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("server/tls");
    let sans = test_sans();
    let first = Pki::load_or_create(&dir, &sans).expect("first load");
    let before: Vec<Vec<u8>> = ALL_FILES.iter().map(|f| read(&dir, f)).collect();
    let second = Pki::load_or_create(&dir, &sans).expect("second load");
    let after: Vec<Vec<u8>> = ALL_FILES.iter().map(|f| read(&dir, f)).collect();
    assert_eq!(before, after, "files must not change on restart");
    assert_eq!(first.server_ca_pem(), second.server_ca_pem());
    assert_eq!(first.client_ca_pem(), second.client_ca_pem());
    assert_eq!(first.serving_cert_pem(), second.serving_cert_pem());
    assert_eq!(first.admin_cert_pem(), second.admin_cert_pem());
    assert_eq!(
        first.service_account_key_pem(),
        second.service_account_key_pem()
    );
    assert_eq!(
        first.server_ca_pem().as_bytes(),
        read(&dir, files::SERVER_CA_CRT)
    );
    assert_ne!(first.server_ca_pem(), first.client_ca_pem());
}

#[test]
fn file_modes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    Pki::load_or_create(tmp.path(), &test_sans()).expect("load");
    for key in [
        files::SERVER_CA_KEY,
        files::CLIENT_CA_KEY,
        files::SERVING_KEY,
        files::ADMIN_KEY,
        files::SERVICE_KEY,
    ] {
        assert_eq!(mode(tmp.path(), key), 0o600, "{key}");
    }
    for crt in [
        files::SERVER_CA_CRT,
        files::CLIENT_CA_CRT,
        files::SERVING_CRT,
        files::ADMIN_CRT,
        files::SERVICE_PUB,
    ] {
        assert_eq!(mode(tmp.path(), crt), 0o644, "{crt}");
    }
    // No temp files left behind.
    let names: Vec<String> = std::fs::read_dir(tmp.path())
        .expect("readdir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), ALL_FILES.len(), "{names:?}");
}

#[test]
fn ca_names_and_serving_cert_verifies_for_every_san() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let sans = test_sans();
    let pki = Pki::load_or_create(tmp.path(), &sans).expect("load");

    let ca_der = der(pki.server_ca_pem());
    let (_, ca) = x509_parser::parse_x509_certificate(&ca_der).expect("parse CA");
    let cn = ca
        .subject()
        .iter_common_name()
        .next()
        .expect("CN")
        .as_str()
        .expect("str");
    assert!(cn.starts_with("skiff-server-ca@"), "{cn}");
    assert!(ca.is_ca());
    let days = (ca.validity().not_after.timestamp() - chrono::Utc::now().timestamp()) / 86_400;
    assert!((3640..=3651).contains(&days), "CA validity {days} days");

    for name in &sans.dns {
        let server_name = ServerName::try_from(name.clone()).expect("dns name");
        verify_server(pki.server_ca_pem(), pki.serving_cert_pem(), server_name)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    for ip in &sans.ips {
        verify_server(
            pki.server_ca_pem(),
            pki.serving_cert_pem(),
            ServerName::from(*ip),
        )
        .unwrap_or_else(|e| panic!("{ip}: {e}"));
    }
    for required in FIXED_DNS_SANS {
        assert!(sans.dns.iter().any(|d| d == required));
    }
    assert!(sans.ips.contains(&"127.0.0.1".parse().expect("ip")));
    assert!(sans.ips.contains(&"::1".parse().expect("ip")));
    assert!(sans.ips.contains(&"10.43.0.1".parse().expect("ip")));
    // Not valid for an unrequested name, nor against the client CA.
    assert!(verify_server(
        pki.server_ca_pem(),
        pki.serving_cert_pem(),
        ServerName::try_from("other.example.org").expect("name")
    )
    .is_err());
    assert!(verify_server(
        pki.client_ca_pem(),
        pki.serving_cert_pem(),
        ServerName::try_from("localhost").expect("name")
    )
    .is_err());
    // x509-parser signature check agrees.
    assert!(certs::signed_by(&der(pki.serving_cert_pem()), pki.server_ca_pem()).expect("check"));
    assert!(!certs::signed_by(&der(pki.serving_cert_pem()), pki.client_ca_pem()).expect("check"));
    let got = pki.serving_sans().expect("sans");
    assert_eq!(got.dns.len(), sans.dns.len());
    assert_eq!(got.ips.len(), sans.ips.len());
}

#[test]
fn new_san_reissues_only_serving_cert() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let sans = test_sans();
    let first = Pki::load_or_create(tmp.path(), &sans).expect("first");
    let admin_before = read(tmp.path(), files::ADMIN_CRT);

    let mut grown = sans.clone();
    let new_ip: IpAddr = "198.51.100.7".parse().expect("ip");
    grown.add_ip(new_ip);
    grown.add_dns("api.new.example");
    let second = Pki::load_or_create(tmp.path(), &grown).expect("second");

    assert_eq!(first.server_ca_pem(), second.server_ca_pem());
    assert_eq!(first.server_ca_key_pem(), second.server_ca_key_pem());
    assert_eq!(first.client_ca_pem(), second.client_ca_pem());
    assert_eq!(admin_before, read(tmp.path(), files::ADMIN_CRT));
    assert_ne!(first.serving_cert_pem(), second.serving_cert_pem());
    assert_eq!(
        second.serving_cert_pem().as_bytes(),
        read(tmp.path(), files::SERVING_CRT)
    );
    verify_server(
        second.server_ca_pem(),
        second.serving_cert_pem(),
        ServerName::from(new_ip),
    )
    .expect("new IP");
    verify_server(
        second.server_ca_pem(),
        second.serving_cert_pem(),
        ServerName::try_from("api.new.example").expect("name"),
    )
    .expect("new name");
    verify_server(
        second.server_ca_pem(),
        second.serving_cert_pem(),
        ServerName::try_from("skiff.example.com").expect("name"),
    )
    .expect("old name still valid");

    // A subset of the SANs is covered: nothing changes.
    let third = Pki::load_or_create(tmp.path(), &sans).expect("third");
    assert_eq!(second.serving_cert_pem(), third.serving_cert_pem());
}

#[test]
fn expiring_or_foreign_leaf_is_reissued_with_same_ca() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let sans = test_sans();
    let first = Pki::load_or_create(tmp.path(), &sans).expect("first");
    // Replace the admin cert with one expiring in 30 days.
    let (short_cert, short_key) = first
        .issue_client_cert(ADMIN_USER, &[ADMIN_GROUP], 30)
        .expect("short cert");
    std::fs::write(tmp.path().join(files::ADMIN_CRT), &short_cert).expect("write");
    std::fs::write(tmp.path().join(files::ADMIN_KEY), &short_key).expect("write");
    // Replace the serving cert with one signed by a foreign CA.
    let foreign = Ca::generate("foreign").expect("foreign CA");
    let (foreign_cert, foreign_key) = foreign
        .issue(
            "kube-apiserver",
            certs::LeafProfile::Server { sans: &sans },
            365,
        )
        .expect("foreign cert");
    std::fs::write(tmp.path().join(files::SERVING_CRT), &foreign_cert).expect("write");
    std::fs::write(tmp.path().join(files::SERVING_KEY), &foreign_key).expect("write");

    let second = Pki::load_or_create(tmp.path(), &sans).expect("second");
    assert_eq!(first.server_ca_pem(), second.server_ca_pem());
    assert_eq!(first.client_ca_pem(), second.client_ca_pem());
    assert_ne!(second.admin_cert_pem(), short_cert);
    assert_ne!(second.serving_cert_pem(), foreign_cert);
    verify_client(second.client_ca_pem(), second.admin_cert_pem()).expect("admin verifies");
    verify_server(
        second.server_ca_pem(),
        second.serving_cert_pem(),
        ServerName::try_from("localhost").expect("name"),
    )
    .expect("serving verifies");
    let info = CertInfo::from_pem(second.admin_cert_pem(), "admin").expect("parse");
    let days = (info.not_after - chrono::Utc::now().timestamp()) / 86_400;
    assert!((360..=366).contains(&days), "leaf validity {days} days");
    assert_eq!(mode(tmp.path(), files::ADMIN_KEY), 0o600);
}

#[test]
fn incomplete_or_corrupt_ca_is_an_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    Pki::load_or_create(tmp.path(), &test_sans()).expect("first");
    std::fs::remove_file(tmp.path().join(files::CLIENT_CA_KEY)).expect("rm");
    let err = Pki::load_or_create(tmp.path(), &test_sans()).expect_err("must fail");
    assert!(matches!(err, PkiError::IncompleteCa { .. }), "{err}");
    assert!(err.to_string().contains("client-ca.key"), "{err}");

    std::fs::write(tmp.path().join(files::CLIENT_CA_KEY), "garbage").expect("write");
    let err = Pki::load_or_create(tmp.path(), &test_sans()).expect_err("must fail");
    assert!(matches!(err, PkiError::Parse { .. }), "{err}");

    // A CA key that does not belong to the certificate.
    let other = Ca::generate("other").expect("ca");
    std::fs::write(tmp.path().join(files::CLIENT_CA_KEY), other.key_pem()).expect("write");
    let err = Pki::load_or_create(tmp.path(), &test_sans()).expect_err("must fail");
    assert!(err.to_string().contains("does not match"), "{err}");
}

#[test]
fn admin_and_node_identities() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pki = Pki::load_or_create(tmp.path(), &test_sans()).expect("load");
    let admin = ClientIdentity::from_der(&der(pki.admin_cert_pem())).expect("identity");
    assert_eq!(admin.user, "system:admin");
    assert_eq!(admin.groups, vec!["system:masters".to_string()]);
    verify_client(pki.client_ca_pem(), pki.admin_cert_pem()).expect("admin verifies");
    assert!(verify_client(pki.server_ca_pem(), pki.admin_cert_pem()).is_err());

    let (node_cert, node_key) = pki
        .issue_client_cert("system:node:worker-1", &["system:nodes"], 365)
        .expect("node cert");
    assert!(node_key.contains("PRIVATE KEY"));
    let node = ClientIdentity::from_der(&der(&node_cert)).expect("identity");
    assert_eq!(node.user, "system:node:worker-1");
    assert_eq!(node.groups, vec!["system:nodes".to_string()]);
    verify_client(pki.client_ca_pem(), &node_cert).expect("node verifies");

    let (two, _) = pki
        .issue_client_cert("alice", &["dev", "ops"], 1)
        .expect("two orgs");
    let alice = ClientIdentity::from_der(&der(&two)).expect("identity");
    assert_eq!(alice.groups, vec!["dev".to_string(), "ops".to_string()]);
    verify_client(pki.client_ca_pem(), &two).expect("two orgs verify");

    let (none, _) = pki.issue_client_cert("bob", &[], 1).expect("no orgs");
    assert!(ClientIdentity::from_der(&der(&none))
        .expect("id")
        .groups
        .is_empty());

    assert!(pki.issue_client_cert("x", &["a", "b", "c"], 1).is_err());
    assert!(pki.issue_client_cert("", &[], 1).is_err());
    assert!(pki.issue_client_cert("x", &[], 0).is_err());
    assert!(ClientIdentity::from_der(b"not a certificate").is_err());
}

#[test]
fn kubeconfig_round_trip() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pki = Pki::load_or_create(&tmp.path().join("tls"), &test_sans()).expect("load");
    let text = pki.admin_kubeconfig("https://127.0.0.1:6443");
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).expect("valid YAML");
    let b64 = |v: &serde_yaml::Value| -> String {
        let s = v.as_str().expect("string");
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .expect("base64"),
        )
        .expect("utf8")
    };
    assert_eq!(doc["apiVersion"].as_str(), Some("v1"));
    assert_eq!(doc["kind"].as_str(), Some("Config"));
    assert_eq!(doc["current-context"].as_str(), Some("default"));
    let cluster = &doc["clusters"][0];
    assert_eq!(cluster["name"].as_str(), Some("default"));
    assert_eq!(
        cluster["cluster"]["server"].as_str(),
        Some("https://127.0.0.1:6443")
    );
    assert_eq!(
        b64(&cluster["cluster"]["certificate-authority-data"]),
        pki.server_ca_pem()
    );
    let context = &doc["contexts"][0];
    assert_eq!(context["name"].as_str(), Some("default"));
    assert_eq!(context["context"]["cluster"].as_str(), Some("default"));
    assert_eq!(context["context"]["user"].as_str(), Some("default"));
    let user = &doc["users"][0];
    assert_eq!(user["name"].as_str(), Some("default"));
    assert_eq!(
        b64(&user["user"]["client-certificate-data"]),
        pki.admin_cert_pem()
    );
    assert_eq!(b64(&user["user"]["client-key-data"]), pki.admin_key_pem());
    for list in ["clusters", "contexts", "users"] {
        assert_eq!(doc[list].as_sequence().map(Vec::len), Some(1), "{list}");
    }

    // Names and URLs that need quoting survive.
    let odd = kubeconfig(
        "https://[::1]:6443",
        "ca",
        "cert",
        "key",
        "my \"odd\": name",
    );
    let doc: serde_yaml::Value = serde_yaml::from_str(&odd).expect("valid YAML");
    assert_eq!(
        doc["clusters"][0]["cluster"]["server"].as_str(),
        Some("https://[::1]:6443")
    );
    assert_eq!(doc["current-context"].as_str(), Some("my \"odd\": name"));
    let ctrl = kubeconfig("https://a", "ca", "cert", "key", "a\u{1}b\\c\td");
    let doc: serde_yaml::Value = serde_yaml::from_str(&ctrl).expect("valid YAML");
    assert_eq!(doc["users"][0]["name"].as_str(), Some("a\u{1}b\\c\td"));
    let yes = kubeconfig("https://a", "ca", "cert", "key", "yes");
    let doc: serde_yaml::Value = serde_yaml::from_str(&yes).expect("valid YAML");
    assert_eq!(doc["users"][0]["name"].as_str(), Some("yes"));

    let path = tmp.path().join("etc/skiff/skiff.yaml");
    write_kubeconfig(&path, &text, KUBECONFIG_MODE).expect("write");
    assert_eq!(std::fs::read_to_string(&path).expect("read"), text);
    assert_eq!(mode(tmp.path(), "etc/skiff/skiff.yaml"), 0o600);
    write_kubeconfig(&path, "x", 0o644).expect("overwrite");
    assert_eq!(mode(tmp.path(), "etc/skiff/skiff.yaml"), 0o644);
    assert_eq!(
        std::fs::read_dir(tmp.path().join("etc/skiff"))
            .expect("dir")
            .count(),
        1
    );
}

#[test]
fn tokens() {
    let ca = "-----BEGIN CERTIFICATE-----\nabc\n-----END CERTIFICATE-----\n";
    let secret = generate_secret();
    assert_eq!(secret.len(), 32);
    assert!(secret
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    assert_ne!(secret, generate_secret());

    let token = server_token(ca, &secret);
    let hash = ca_hash(ca);
    assert_eq!(hash.len(), 64);
    assert_eq!(token, format!("K10{hash}::server:{secret}"));
    let parsed = parse_token(&token).expect("parse");
    assert_eq!(parsed.ca_hash.as_deref(), Some(hash.as_str()));
    assert_eq!(parsed.username, "server");
    assert_eq!(parsed.password, secret);
    parsed.verify_ca(ca).expect("same CA");
    assert_eq!(parsed.to_token_string(ca), token);
    let err = parsed.verify_ca("another CA").expect_err("mismatch");
    assert!(matches!(err, PkiError::CaHashMismatch { .. }));
    assert!(!format!("{parsed:?}").contains(&secret));

    let bare = parse_token("  mysecret\n").expect("bare");
    assert_eq!(bare.ca_hash, None);
    assert_eq!(bare.username, "server");
    assert_eq!(bare.password, "mysecret");
    bare.verify_ca(ca).expect("no pin");

    let node = parse_token(&format!("K10{hash}::node:pa:ss")).expect("node");
    assert_eq!(
        (node.username.as_str(), node.password.as_str()),
        ("node", "pa:ss")
    );
    let unpinned = parse_token("K10::server:s").expect("no hash");
    assert_eq!(unpinned.ca_hash, None);

    for bad in [
        "",
        "K10abc::server:x",
        &format!("K10{hash}::server"),
        &format!("K10{hash}::server:"),
    ] {
        assert!(parse_token(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn server_token_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let server_dir = tmp.path().join("server");
    let ca = "ca-one";
    let token = load_or_create_server_token(&server_dir, ca).expect("create");
    assert_eq!(mode(&server_dir, TOKEN_FILE), 0o600);
    assert_eq!(
        std::fs::read_to_string(server_dir.join(TOKEN_FILE))
            .expect("read")
            .trim(),
        token
    );
    assert_eq!(
        load_or_create_server_token(&server_dir, ca).expect("reload"),
        token
    );
    let secret = parse_token(&token).expect("parse").password;

    // A CA change keeps the secret but re-pins the hash.
    let repinned = load_or_create_server_token(&server_dir, "ca-two").expect("repin");
    assert_eq!(repinned, server_token("ca-two", &secret));

    // A bare secret written by an operator is upgraded to the full form.
    std::fs::write(server_dir.join(TOKEN_FILE), "operator-secret\n").expect("write");
    let upgraded = load_or_create_server_token(&server_dir, ca).expect("upgrade");
    assert_eq!(upgraded, server_token(ca, "operator-secret"));
}

#[test]
fn serving_sans_defaults() {
    let sans = ServingSans::defaults(
        "10.43.0.1".parse().expect("ip"),
        &[
            "Extra.Example.COM.".into(),
            "203.0.113.5".into(),
            "[2001:db8::1]".into(),
        ],
    );
    for name in FIXED_DNS_SANS {
        assert!(sans.dns.contains(&name.to_string()), "{name}");
    }
    assert!(sans.dns.contains(&"extra.example.com".to_string()));
    if let Some(host) = hostname() {
        assert!(sans.dns.contains(&host.to_ascii_lowercase()));
    }
    for ip in [
        "127.0.0.1",
        "::1",
        "10.43.0.1",
        "203.0.113.5",
        "2001:db8::1",
    ] {
        assert!(sans.ips.contains(&ip.parse().expect("ip")), "{ip}");
    }
    for ip in host_addresses() {
        assert!(sans.ips.contains(&ip));
        assert!(!ip.is_loopback());
    }
    let mut dedup = sans.clone();
    dedup.add("localhost");
    dedup.add("127.0.0.1");
    assert_eq!(dedup, sans);
}

#[test]
fn service_account_key_pair_matches() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pki = Pki::load_or_create(tmp.path(), &test_sans()).expect("load");
    let key = rcgen::KeyPair::from_pem(pki.service_account_key_pem()).expect("key");
    assert_eq!(key.algorithm(), &rcgen::PKCS_ECDSA_P256_SHA256);
    assert_eq!(key.public_key_pem(), pki.service_account_pub_pem());
    assert!(pki.service_account_pub_pem().contains("BEGIN PUBLIC KEY"));
    // A missing public key is recreated from the private key.
    std::fs::remove_file(tmp.path().join(files::SERVICE_PUB)).expect("rm");
    let again = Pki::load_or_create(tmp.path(), &test_sans()).expect("reload");
    assert_eq!(
        again.service_account_pub_pem(),
        pki.service_account_pub_pem()
    );
    assert_eq!(
        read(tmp.path(), files::SERVICE_PUB),
        pki.service_account_pub_pem().as_bytes()
    );
}

/// Drives a rustls handshake entirely in memory.
fn handshake(
    client: &mut rustls::ClientConnection,
    server: &mut rustls::ServerConnection,
) -> Result<(), rustls::Error> {
    for _ in 0..20 {
        let mut buf = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut buf).expect("client write");
        }
        let mut slice = buf.as_slice();
        while !slice.is_empty() {
            server.read_tls(&mut slice).expect("server read");
        }
        server.process_new_packets()?;
        let mut buf = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut buf).expect("server write");
        }
        let mut slice = buf.as_slice();
        while !slice.is_empty() {
            client.read_tls(&mut slice).expect("client read");
        }
        client.process_new_packets()?;
        if !client.is_handshaking() && !server.is_handshaking() {
            return Ok(());
        }
    }
    Err(rustls::Error::General("handshake did not finish".into()))
}

fn client_config(pki: &Pki, client_cert: Option<(&str, &str)>) -> Arc<rustls::ClientConfig> {
    let builder = rustls::ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(root_store(pki.server_ca_pem(), "ca").expect("roots"));
    let mut config = match client_cert {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                parse_cert_chain(cert, "cert").expect("cert"),
                parse_private_key(key, "key").expect("key"),
            )
            .expect("client auth"),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

#[test]
fn tls_handshake_with_and_without_client_cert() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pki = Pki::load_or_create(tmp.path(), &test_sans()).expect("load");
    let server_config = pki.server_tls_config(true).expect("server config");
    assert_eq!(
        server_config.alpn_protocols,
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    );
    let name = ServerName::try_from("kubernetes.default.svc").expect("name");

    // With the admin certificate: identity comes out of the verified peer cert.
    let mut client = rustls::ClientConnection::new(
        client_config(&pki, Some((pki.admin_cert_pem(), pki.admin_key_pem()))),
        name.clone(),
    )
    .expect("client");
    let mut server = rustls::ServerConnection::new(server_config.clone()).expect("server");
    handshake(&mut client, &mut server).expect("handshake");
    assert_eq!(server.alpn_protocol(), Some(&b"h2"[..]));
    let peer = server.peer_certificates().expect("peer certs");
    let id = ClientIdentity::from_der(&peer[0]).expect("identity");
    assert_eq!(id.user, "system:admin");
    assert_eq!(id.groups, vec!["system:masters".to_string()]);

    // Without a certificate (bearer-token client): still accepted.
    let mut client =
        rustls::ClientConnection::new(client_config(&pki, None), name.clone()).expect("client");
    let mut server = rustls::ServerConnection::new(server_config.clone()).expect("server");
    handshake(&mut client, &mut server).expect("anonymous handshake");
    assert!(server.peer_certificates().is_none());

    // A certificate from another CA is rejected.
    let foreign = Ca::generate("foreign").expect("ca");
    let (cert, key) = foreign
        .issue(
            "mallory",
            certs::LeafProfile::Client {
                organizations: &["system:masters"],
            },
            1,
        )
        .expect("cert");
    let mut client =
        rustls::ClientConnection::new(client_config(&pki, Some((&cert, &key))), name.clone())
            .expect("client");
    let mut server = rustls::ServerConnection::new(server_config).expect("server");
    assert!(handshake(&mut client, &mut server).is_err());

    // Without client auth the server does not ask for certificates.
    let plain = pki.server_tls_config(false).expect("plain config");
    let mut client = rustls::ClientConnection::new(
        client_config(&pki, Some((pki.admin_cert_pem(), pki.admin_key_pem()))),
        name,
    )
    .expect("client");
    let mut server = rustls::ServerConnection::new(plain).expect("server");
    handshake(&mut client, &mut server).expect("handshake");
    assert!(server.peer_certificates().is_none());
}
