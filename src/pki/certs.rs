//! Certificate authority handling and leaf issuance on top of rcgen, plus
//! inspection of existing certificates with x509-parser.

use std::collections::BTreeSet;
use std::net::IpAddr;

use chrono::Datelike;
use rand::RngCore;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType, SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::error::PkiError;
use super::sans::ServingSans;

/// Validity of CA certificates (10 years).
pub const CA_VALIDITY_DAYS: u32 = 3650;
/// Validity of leaf certificates (1 year).
pub const LEAF_VALIDITY_DAYS: u32 = 365;
/// Leaf certificates expiring within this many days are re-issued on start.
pub const RENEW_BEFORE_DAYS: u32 = 90;

/// Common name of the API server's serving certificate.
pub const SERVING_CN: &str = "kube-apiserver";

/// A certificate authority: its certificate and private key, both PEM.
#[derive(Clone)]
pub struct Ca {
    pub(crate) cert_pem: String,
    pub(crate) key_pem: String,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// What kind of leaf certificate to issue.
pub(crate) enum LeafProfile<'a> {
    /// TLS server certificate with the given subject alternative names.
    Server { sans: &'a ServingSans },
    /// TLS client certificate; Kubernetes maps CN to the user and O to groups.
    Client { organizations: &'a [&'a str] },
}

fn new_key(what: &str) -> Result<KeyPair, PkiError> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(|e| PkiError::generate(format!("{what} key"), e))
}

/// A fresh random positive serial number (128 bits).
fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes[0] &= 0x7f;
    // Avoid a leading zero byte so the encoding is exactly 16 bytes.
    bytes[0] |= 0x01;
    SerialNumber::from_slice(&bytes)
}

/// Sets not_before to yesterday (UTC midnight, tolerates clock skew) and
/// not_after to `days` days from today.
fn set_validity(params: &mut CertificateParams, days: u32) -> Result<(), PkiError> {
    let today = chrono::Utc::now().date_naive();
    let start = today - chrono::Days::new(1);
    let end = today
        .checked_add_days(chrono::Days::new(u64::from(days)))
        .ok_or_else(|| PkiError::InvalidInput(format!("validity of {days} days overflows")))?;
    let to_dt = |d: chrono::NaiveDate| {
        // month() is 1..=12 and day() 1..=31, both fit in u8.
        rcgen::date_time_ymd(d.year(), d.month() as u8, d.day() as u8)
    };
    params.not_before = to_dt(start);
    params.not_after = to_dt(end);
    Ok(())
}

impl Ca {
    /// Creates a new self-signed CA named `common_name`.
    pub fn generate(common_name: &str) -> Result<Ca, PkiError> {
        let key = new_key(common_name)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
        ];
        params.serial_number = Some(random_serial());
        set_validity(&mut params, CA_VALIDITY_DAYS)?;
        let cert = params
            .self_signed(&key)
            .map_err(|e| PkiError::generate(format!("{common_name} certificate"), e))?;
        Ok(Ca {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Checks that a CA read from disk parses and that key and certificate belong together.
    pub fn validate(&self, what: &str) -> Result<(), PkiError> {
        let key = KeyPair::from_pem(&self.key_pem)
            .map_err(|e| PkiError::parse(format!("{what} key"), e))?;
        let info = CertInfo::from_pem(&self.cert_pem, what)?;
        if info.spki_der != key.public_key_der() {
            return Err(PkiError::parse(
                what.to_string(),
                "certificate does not match its private key",
            ));
        }
        if info.not_after <= chrono::Utc::now().timestamp() {
            return Err(PkiError::parse(
                what.to_string(),
                "CA certificate has expired",
            ));
        }
        Ok(())
    }

    /// The CA certificate in PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA private key in PEM (PKCS#8).
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// Issues a leaf certificate with a fresh P-256 key; returns (cert PEM, key PEM).
    pub(crate) fn issue(
        &self,
        common_name: &str,
        profile: LeafProfile<'_>,
        validity_days: u32,
    ) -> Result<(String, String), PkiError> {
        if common_name.is_empty() {
            return Err(PkiError::InvalidInput("empty common name".into()));
        }
        if validity_days == 0 {
            return Err(PkiError::InvalidInput("validity of 0 days".into()));
        }
        let ca_key =
            KeyPair::from_pem(&self.key_pem).map_err(|e| PkiError::parse("CA private key", e))?;
        let ca_params = CertificateParams::from_ca_cert_pem(&self.cert_pem)
            .map_err(|e| PkiError::parse("CA certificate", e))?;
        // Re-signing the parsed parameters yields an issuer object with the
        // original subject DN and (pre-specified) key identifier; its own DER
        // is never used.
        let issuer = ca_params
            .self_signed(&ca_key)
            .map_err(|e| PkiError::generate("CA issuer", e))?;

        let key = new_key(common_name)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        params.is_ca = IsCa::ExplicitNoCa;
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial());
        set_validity(&mut params, validity_days)?;
        match profile {
            LeafProfile::Server { sans } => {
                params.key_usages = vec![
                    KeyUsagePurpose::DigitalSignature,
                    KeyUsagePurpose::KeyEncipherment,
                ];
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
                params.subject_alt_names = san_entries(sans)?;
            }
            LeafProfile::Client { organizations } => {
                params.key_usages = vec![
                    KeyUsagePurpose::DigitalSignature,
                    KeyUsagePurpose::KeyEncipherment,
                ];
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
                push_organizations(&mut dn, organizations)?;
            }
        }
        params.distinguished_name = dn;
        let cert = params
            .signed_by(&key, &issuer, &ca_key)
            .map_err(|e| PkiError::generate(format!("certificate for {common_name}"), e))?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

/// OID arcs of id-at-organizationName (2.5.4.10).
const ORGANIZATION_OID: [u64; 4] = [2, 5, 4, 10];

/// Adds one O attribute per organization.
///
/// rcgen keeps at most one value per attribute type, so the first organization
/// uses [`DnType::OrganizationName`] and a second one the custom type with the
/// same OID (the two are distinct map keys but encode identically). More than
/// two organizations cannot be expressed through rcgen 0.13 and are rejected.
fn push_organizations(dn: &mut DistinguishedName, orgs: &[&str]) -> Result<(), PkiError> {
    let mut seen = BTreeSet::new();
    let orgs: Vec<&str> = orgs
        .iter()
        .copied()
        .filter(|o| !o.is_empty() && seen.insert(*o))
        .collect();
    if orgs.len() > 2 {
        return Err(PkiError::InvalidInput(format!(
            "at most 2 organizations per client certificate are supported, got {}",
            orgs.len()
        )));
    }
    for (i, org) in orgs.iter().enumerate() {
        let ty = if i == 0 {
            DnType::OrganizationName
        } else {
            DnType::CustomDnType(ORGANIZATION_OID.to_vec())
        };
        dn.push(ty, *org);
    }
    Ok(())
}

fn san_entries(sans: &ServingSans) -> Result<Vec<SanType>, PkiError> {
    let mut out = Vec::with_capacity(sans.dns.len() + sans.ips.len());
    for name in &sans.dns {
        let ia5 = rcgen::Ia5String::try_from(name.as_str())
            .map_err(|e| PkiError::InvalidInput(format!("DNS SAN {name:?}: {e}")))?;
        out.push(SanType::DnsName(ia5));
    }
    out.extend(sans.ips.iter().copied().map(SanType::IpAddress));
    Ok(out)
}

/// The parts of a certificate the PKI decides on.
#[derive(Debug, Clone)]
pub(crate) struct CertInfo {
    pub der: Vec<u8>,
    pub spki_der: Vec<u8>,
    /// Unix seconds.
    pub not_after: i64,
    pub dns_sans: BTreeSet<String>,
    pub ip_sans: BTreeSet<IpAddr>,
}

/// Decodes the first CERTIFICATE block of a PEM string to DER.
pub(crate) fn pem_to_der(pem: &str, what: &str) -> Result<Vec<u8>, PkiError> {
    let mut reader = pem.as_bytes();
    let first = rustls_pemfile::certs(&mut reader).next();
    match first {
        Some(Ok(der)) => Ok(der.as_ref().to_vec()),
        Some(Err(e)) => Err(PkiError::parse(what.to_string(), e)),
        None => Err(PkiError::parse(
            what.to_string(),
            "no CERTIFICATE block in PEM",
        )),
    }
}

impl CertInfo {
    pub fn from_pem(pem: &str, what: &str) -> Result<CertInfo, PkiError> {
        let der = pem_to_der(pem, what)?;
        let (_, cert) =
            X509Certificate::from_der(&der).map_err(|e| PkiError::parse(what.to_string(), e))?;
        let mut dns_sans = BTreeSet::new();
        let mut ip_sans = BTreeSet::new();
        let san = cert
            .subject_alternative_name()
            .map_err(|e| PkiError::parse(format!("{what} subjectAltName"), e))?;
        if let Some(san) = san {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(d) => {
                        dns_sans.insert(d.to_ascii_lowercase());
                    }
                    GeneralName::IPAddress(bytes) => {
                        if let Some(ip) = ip_from_bytes(bytes) {
                            ip_sans.insert(ip);
                        }
                    }
                    _ => {}
                }
            }
        }
        let spki_der = cert.public_key().raw.to_vec();
        let not_after = cert.validity().not_after.timestamp();
        Ok(CertInfo {
            der,
            spki_der,
            not_after,
            dns_sans,
            ip_sans,
        })
    }

    /// True if every requested SAN is present in this certificate.
    pub fn covers(&self, sans: &ServingSans) -> bool {
        sans.dns
            .iter()
            .all(|d| self.dns_sans.contains(&d.to_ascii_lowercase()))
            && sans.ips.iter().all(|ip| self.ip_sans.contains(ip))
    }
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

/// Verifies that `leaf_der` carries a valid signature by `ca_pem`'s key and
/// names it as issuer.
pub(crate) fn signed_by(leaf_der: &[u8], ca_pem: &str) -> Result<bool, PkiError> {
    let ca_der = pem_to_der(ca_pem, "CA certificate")?;
    let (_, ca) =
        X509Certificate::from_der(&ca_der).map_err(|e| PkiError::parse("CA certificate", e))?;
    let (_, leaf) =
        X509Certificate::from_der(leaf_der).map_err(|e| PkiError::parse("leaf certificate", e))?;
    if leaf.issuer().as_raw() != ca.subject().as_raw() {
        return Ok(false);
    }
    Ok(leaf.verify_signature(Some(ca.public_key())).is_ok())
}

/// Decides whether an existing leaf must be re-issued; returns the reason if so.
///
/// A leaf that cannot be parsed, does not match its key, was not signed by
/// `ca`, expires within [`RENEW_BEFORE_DAYS`] or (for serving certificates)
/// does not cover `required_sans` is re-issued.
pub(crate) fn reissue_reason(
    cert_pem: &str,
    key_pem: &str,
    ca: &Ca,
    required_sans: Option<&ServingSans>,
    what: &str,
) -> Option<String> {
    let info = match CertInfo::from_pem(cert_pem, what) {
        Ok(i) => i,
        Err(e) => return Some(format!("unparsable: {e}")),
    };
    match KeyPair::from_pem(key_pem) {
        Ok(k) if k.public_key_der() == info.spki_der => {}
        Ok(_) => return Some("certificate does not match private key".into()),
        Err(e) => return Some(format!("unparsable private key: {e}")),
    }
    match signed_by(&info.der, &ca.cert_pem) {
        Ok(true) => {}
        Ok(false) => return Some("not signed by the current CA".into()),
        Err(e) => return Some(format!("cannot check issuer: {e}")),
    }
    let renew_at = chrono::Utc::now().timestamp() + i64::from(RENEW_BEFORE_DAYS) * 86_400;
    if info.not_after <= renew_at {
        return Some(format!("expires within {RENEW_BEFORE_DAYS} days"));
    }
    if let Some(sans) = required_sans {
        if !info.covers(sans) {
            return Some("subject alternative names do not cover the requested ones".into());
        }
    }
    None
}
