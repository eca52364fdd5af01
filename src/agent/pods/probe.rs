//! Container probes and lifecycle hooks, as kubelet's prober and lifecycle handlers run
//! them. This module owns:
//!
//! - the pure parts: a probe's timing with the API's defaults ([`Timing`]), kubelet's
//!   threshold counting ([`Tracker`]), what the results make of a container's `started`
//!   and `ready` ([`PodProbes::view`]), where a handler points ([`http_target`],
//!   [`resolve_port`]) and how an HTTP answer is judged ([`http_outcome`]);
//! - running them: one task per probe of each running container attempt
//!   ([`PodProbes::sync`] starts and stops them), which records `Unhealthy` events, keeps
//!   the shared results and wakes the pod worker when a result changes. The worker reads
//!   the results for the pod's status and kills containers whose liveness or startup
//!   probe failed (it owns stopping containers: preStop, SIGTERM, SIGKILL);
//! - running a lifecycle hook ([`run_hook`]: httpGet, sleep, exec).
//!
//! Semantics follow kubelet: probes start `initialDelaySeconds` after the container
//! started and run every `periodSeconds`, each bounded by `timeoutSeconds`; a result
//! changes only after `successThreshold`/`failureThreshold` equal results in a row;
//! readiness starts false, liveness and readiness wait for the startup probe; a failed
//! liveness or startup probe stops probing until the container is replaced; a probe
//! that errors (not a failure: an unknown port name, an unsupported handler) is thrown
//! away with an event. HTTPS does not verify the server's certificate (as kubelet). HTTP
//! probes follow no redirects (kubelet follows same-host ones); gRPC probes are not
//! supported yet and error clearly.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{
    Container, HTTPGetAction, LifecycleHandler, ObjectReference, Pod, Probe,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::plan::Observed;
use super::worker::{NodeContext, Wake};
use crate::client::events::{reference, EventType};

/// The `major.minor` kubelet version skiff speaks for (`kube-probe/1.32`).
const KUBE_VERSION: &str = "1.32";
/// How long an HTTP lifecycle hook may take before it counts as failed (kubelet sets none;
/// a bound keeps a silent server from holding the pod worker forever).
const HOOK_HTTP_TIMEOUT: Duration = Duration::from_secs(60);
/// The least time a container gets between SIGTERM and SIGKILL after its preStop hook
/// (kubelet's `minimumGracePeriodInSeconds`).
pub const MIN_GRACE_AFTER_HOOK: Duration = Duration::from_secs(2);

/// Which probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Startup,
    Liveness,
    Readiness,
}

impl Kind {
    /// The word kubelet's events use ("Liveness probe failed: ...").
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Startup => "Startup",
            Kind::Liveness => "Liveness",
            Kind::Readiness => "Readiness",
        }
    }

    fn of(self, c: &Container) -> Option<&Probe> {
        match self {
            Kind::Startup => c.startup_probe.as_ref(),
            Kind::Liveness => c.liveness_probe.as_ref(),
            Kind::Readiness => c.readiness_probe.as_ref(),
        }
    }
}

/// A probe's timing and thresholds, with the API's defaults for unset (or zero) fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

impl Timing {
    pub fn of(p: &Probe) -> Timing {
        let secs = |v: Option<i32>, default: u64| {
            Duration::from_secs(
                v.and_then(|v| u64::try_from(v).ok())
                    .filter(|v| *v > 0)
                    .unwrap_or(default),
            )
        };
        let count = |v: Option<i32>, default: u32| {
            v.and_then(|v| u32::try_from(v).ok())
                .filter(|v| *v > 0)
                .unwrap_or(default)
        };
        Timing {
            initial_delay: p
                .initial_delay_seconds
                .and_then(|v| u64::try_from(v).ok())
                .map_or(Duration::ZERO, Duration::from_secs),
            period: secs(p.period_seconds, 10),
            timeout: secs(p.timeout_seconds, 1),
            success_threshold: count(p.success_threshold, 1),
            failure_threshold: count(p.failure_threshold, 3),
        }
    }

    /// How long to wait before the first probe of a container that has run for
    /// `running_for`: probes begin `initialDelaySeconds` after the container started.
    pub fn first_delay(&self, running_for: Duration) -> Duration {
        self.initial_delay.saturating_sub(running_for)
    }
}

/// kubelet's threshold counting: a result is set only after enough equal results in a
/// row (`successThreshold` successes, `failureThreshold` failures).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tracker {
    last: Option<bool>,
    run: u32,
}

impl Tracker {
    /// Count one probe's result; the result to set, once its threshold is reached (it is
    /// returned again on every further equal result, as kubelet sets it again).
    pub fn observe(&mut self, ok: bool, t: &Timing) -> Option<bool> {
        if self.last == Some(ok) {
            self.run = self.run.saturating_add(1);
        } else {
            self.last = Some(ok);
            self.run = 1;
        }
        let needed = if ok {
            t.success_threshold
        } else {
            t.failure_threshold
        };
        (self.run >= needed).then_some(ok)
    }
}

/// The outcome of running a probe once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// The check ran and failed; the text says how (the event's message).
    Failure(String),
    /// The check could not run (kubelet throws these results away).
    Error(String),
}

/// kubelet's judgement of an HTTP probe's status code: 200–399 is success.
pub fn http_outcome(status: u16) -> Outcome {
    if (200..400).contains(&status) {
        Outcome::Success
    } else {
        Outcome::Failure(format!("HTTP probe failed with statuscode: {status}"))
    }
}

/// A port given by number, by a number in a string, or by the name of a container port.
pub fn resolve_port(port: &IntOrString, container: &Container) -> Result<u16, String> {
    let number = match port {
        IntOrString::Int(n) => *n,
        IntOrString::String(s) => match s.parse::<i32>() {
            Ok(n) => n,
            Err(_) => container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(s.as_str()))
                .map(|p| p.container_port)
                .ok_or_else(|| {
                    format!("couldn't find port: {s} in container {:?}", container.name)
                })?,
        },
    };
    u16::try_from(number)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("invalid port number: {number}"))
}

/// Where an HTTP probe or hook goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTarget {
    pub scheme: String,
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
    /// The request's headers, in order (User-Agent, Accept and Host included).
    pub headers: Vec<(String, String)>,
}

impl HttpTarget {
    /// `host:port`, with brackets for an IPv6 address.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    pub fn url(&self) -> String {
        format!(
            "{}://{}{}",
            self.scheme.to_ascii_lowercase(),
            self.authority(),
            self.path
        )
    }
}

/// The request of an httpGet probe or hook: host defaults to the pod's IP, the port may
/// be a container port's name; `user_agent` is kubelet's (`kube-probe/1.32`,
/// `kube-lifecycle/1.32`), replaced by a User-Agent among `httpHeaders`, as is Host.
pub fn http_target(
    action: &HTTPGetAction,
    container: &Container,
    pod_ip: &str,
    user_agent: &str,
) -> Result<HttpTarget, String> {
    let host = action
        .host
        .clone()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| pod_ip.to_string());
    if host.is_empty() {
        return Err("the pod has no IP address yet".into());
    }
    let port = match &action.port {
        IntOrString::String(s) if s.is_empty() => 80,
        p => resolve_port(p, container)?,
    };
    let raw = action.path.clone().unwrap_or_default();
    let path = if raw.starts_with('/') {
        raw
    } else {
        format!("/{raw}")
    };
    let mut target = HttpTarget {
        scheme: action.scheme.clone().unwrap_or_else(|| "HTTP".into()),
        host,
        port,
        path,
        headers: Vec::new(),
    };
    // Custom headers as given; kubelet's User-Agent and Accept only where none is given
    // (an empty Accept removes it); a custom Host replaces the address.
    let custom: Vec<(String, String)> = action
        .http_headers
        .iter()
        .flatten()
        .map(|h| (h.name.clone(), h.value.clone()))
        .collect();
    let given = |name: &str| custom.iter().find(|(n, _)| n.eq_ignore_ascii_case(name));
    let host_header = given("host").map_or_else(|| target.authority(), |h| h.1.clone());
    let mut headers = vec![("Host".to_string(), host_header)];
    if given("user-agent").is_none() {
        headers.push(("User-Agent".into(), user_agent.into()));
    }
    if given("accept").is_none() {
        headers.push(("Accept".into(), "*/*".into()));
    }
    headers.extend(
        custom
            .iter()
            .filter(|(n, v)| {
                let dropped = n.eq_ignore_ascii_case("host")
                    || (n.eq_ignore_ascii_case("accept") && v.is_empty());
                !dropped
            })
            .cloned(),
    );
    target.headers = headers;
    Ok(target)
}

/// Go's wording of a failed dial (`dial tcp 10.42.0.5:80: connect: connection refused`).
fn dial_error(authority: &str, e: &std::io::Error) -> String {
    use std::io::ErrorKind;
    let what = match e.kind() {
        ErrorKind::ConnectionRefused => "connect: connection refused".to_string(),
        ErrorKind::HostUnreachable => "connect: no route to host".to_string(),
        ErrorKind::NetworkUnreachable => "connect: network is unreachable".to_string(),
        _ => e.to_string(),
    };
    format!("dial tcp {authority}: {what}")
}

/// Accepts any server certificate (kubelet's probes and hooks skip verification), but
/// still checks the handshake's signatures.
#[derive(Debug)]
struct SkipVerification(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for SkipVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn insecure_tls() -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS versions: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(SkipVerification(provider)))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Send `request` over `io` (HTTP/1.1); the response's status code.
async fn send<IO>(io: IO, request: http::Request<Empty<Bytes>>) -> Result<u16, String>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
        .title_case_headers(true)
        .handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    let driver = tokio::spawn(conn);
    let answer = sender.send_request(request).await;
    driver.abort();
    answer
        .map(|r| r.status().as_u16())
        .map_err(|e| e.to_string())
}

/// One HTTP(S) GET; the response's status code. Errors carry Go's wording, as kubelet's
/// events show them. HTTPS does not verify the server's certificate (as kubelet).
async fn http_get(target: &HttpTarget, timeout: Duration) -> Result<u16, String> {
    let url = target.url();
    let https = target.scheme.eq_ignore_ascii_case("https");
    if !https && !target.scheme.eq_ignore_ascii_case("http") {
        return Err(format!(
            "Get {url:?}: unsupported protocol scheme {:?}",
            target.scheme
        ));
    }
    let attempt = async {
        let mut request = http::Request::get(target.path.as_str());
        for (name, value) in &target.headers {
            let (Ok(n), Ok(v)) = (
                http::HeaderName::from_bytes(name.as_bytes()),
                http::HeaderValue::from_str(value),
            ) else {
                continue;
            };
            request = request.header(n, v);
        }
        request = request.header(http::header::CONNECTION, "close");
        let request = request
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("Get {url:?}: {e}"))?;
        let stream = tokio::net::TcpStream::connect((target.host.as_str(), target.port))
            .await
            .map_err(|e| format!("Get {url:?}: {}", dial_error(&target.authority(), &e)))?;
        let answer = if https {
            let name = match target.host.parse::<std::net::IpAddr>() {
                Ok(ip) => rustls::pki_types::ServerName::IpAddress(ip.into()),
                Err(_) => rustls::pki_types::ServerName::try_from(target.host.clone())
                    .map_err(|e| format!("Get {url:?}: {e}"))?,
            };
            let tls = tokio_rustls::TlsConnector::from(insecure_tls()?)
                .connect(name, stream)
                .await
                .map_err(|e| format!("Get {url:?}: {e}"))?;
            send(TokioIo::new(tls), request).await
        } else {
            send(TokioIo::new(stream), request).await
        };
        answer.map_err(|e| format!("Get {url:?}: {e}"))
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "Get {url:?}: context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
        )),
    }
}

/// What a command run in a container gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    pub exit_code: i32,
    /// Its stdout and stderr together.
    pub output: String,
}

/// Run `command` in container `container_id` (exec probes and hooks), bounded by
/// `timeout`. The one place exec goes through: the runtime's exec primitive is wired in
/// here.
pub async fn exec_in_container(
    ctx: &NodeContext,
    container_id: &str,
    command: &[String],
    timeout: Duration,
) -> Result<ExecOutput, String> {
    // kubelet keeps at most 10 KiB of a probe's output.
    const LIMIT: usize = 10 * 1024;
    let (exit_code, output) = ctx
        .runtime
        .exec_output(container_id, command.to_vec(), LIMIT, timeout)
        .await
        .map_err(|e| e.to_string())?;
    Ok(ExecOutput {
        exit_code,
        output: String::from_utf8_lossy(&output).into_owned(),
    })
}

/// Everything a probe needs, owned by its task.
#[derive(Clone)]
struct ProbeEnv {
    ctx: Arc<NodeContext>,
    container: Container,
    container_id: String,
    pod_ip: String,
    object: ObjectReference,
}

/// The Event reference of a container of `pod` (`spec.containers{name}`, as kubelet's).
pub fn container_ref(pod: &Pod, name: &str) -> ObjectReference {
    let mut r = reference(pod);
    r.field_path = Some(format!("spec.containers{{{name}}}"));
    r
}

/// Run probe `p` once.
async fn run_probe(env: &ProbeEnv, p: &Probe, timeout: Duration) -> Outcome {
    if let Some(action) = &p.http_get {
        let target = match http_target(
            action,
            &env.container,
            &env.pod_ip,
            &format!("kube-probe/{KUBE_VERSION}"),
        ) {
            Ok(t) => t,
            Err(e) => return Outcome::Error(e),
        };
        if !["http", "https"].contains(&target.scheme.to_ascii_lowercase().as_str()) {
            return Outcome::Error(format!("unsupported scheme {:?}", target.scheme));
        }
        return match http_get(&target, timeout).await {
            Ok(status) => http_outcome(status),
            Err(e) => Outcome::Failure(e),
        };
    }
    if let Some(action) = &p.tcp_socket {
        let port = match resolve_port(&action.port, &env.container) {
            Ok(p) => p,
            Err(e) => return Outcome::Error(e),
        };
        let host = action
            .host
            .clone()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| env.pod_ip.clone());
        let authority = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        return match tokio::time::timeout(
            timeout,
            tokio::net::TcpStream::connect((host.as_str(), port)),
        )
        .await
        {
            Ok(Ok(_)) => Outcome::Success,
            Ok(Err(e)) => Outcome::Failure(dial_error(&authority, &e)),
            Err(_) => Outcome::Failure(format!("dial tcp {authority}: i/o timeout")),
        };
    }
    if let Some(action) = &p.exec {
        let command = action.command.clone().unwrap_or_default();
        return match exec_in_container(&env.ctx, &env.container_id, &command, timeout).await {
            Ok(out) if out.exit_code == 0 => Outcome::Success,
            Ok(out) => Outcome::Failure(out.output),
            Err(e) => Outcome::Error(e),
        };
    }
    if p.grpc.is_some() {
        return Outcome::Error("gRPC probes are not supported by skiff yet".into());
    }
    Outcome::Error("the probe has no handler".into())
}

/// What a container attempt's probes have found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Results {
    /// The startup probe succeeded (always true without one).
    pub started: bool,
    /// The readiness probe's result (false until it succeeds).
    pub ready: bool,
    /// A liveness or startup probe failed: the container must be killed.
    pub failed: Option<Kind>,
}

/// The probe tasks of one container attempt.
struct Probing {
    results: Arc<Mutex<Results>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Probing {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The probes of one pod's containers, by container id.
#[derive(Default)]
pub struct PodProbes {
    running: HashMap<String, Probing>,
}

/// A container whose liveness or startup probe failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed {
    pub name: String,
    pub id: String,
    pub kind: Kind,
}

fn has_probes(c: &Container) -> bool {
    c.startup_probe.is_some() || c.liveness_probe.is_some() || c.readiness_probe.is_some()
}

impl PodProbes {
    /// Start probing the running attempts of the pod's app containers that have probes,
    /// and stop probing attempts that no longer run.
    pub fn sync(
        &mut self,
        ctx: &Arc<NodeContext>,
        pod: &Pod,
        observed: &Observed,
        pod_ip: Option<&str>,
        wake: &mpsc::UnboundedSender<Wake>,
    ) {
        let running: BTreeMap<String, (&Container, chrono::DateTime<Utc>)> = pod
            .spec
            .iter()
            .flat_map(|s| s.containers.iter())
            .filter(|c| has_probes(c))
            .filter_map(|c| {
                let a = observed.get(&c.name)?.last()?;
                a.running().then(|| {
                    (
                        a.state.id.clone(),
                        (c, a.started_at().unwrap_or_else(Utc::now)),
                    )
                })
            })
            .collect();
        self.running.retain(|id, _| running.contains_key(id));
        let Some(pod_ip) = pod_ip else {
            return;
        };
        for (id, (container, started_at)) in running {
            if self.running.contains_key(&id) {
                continue;
            }
            let results = Arc::new(Mutex::new(Results {
                started: container.startup_probe.is_none(),
                ..Default::default()
            }));
            let (started_tx, started_rx) = watch::channel(container.startup_probe.is_none());
            let started_tx = Arc::new(started_tx);
            let env = ProbeEnv {
                ctx: ctx.clone(),
                container: container.clone(),
                container_id: id.clone(),
                pod_ip: pod_ip.to_string(),
                object: container_ref(pod, &container.name),
            };
            let tasks = [Kind::Startup, Kind::Liveness, Kind::Readiness]
                .into_iter()
                .filter_map(|kind| {
                    let probe = kind.of(container)?.clone();
                    Some(tokio::spawn(probe_loop(
                        env.clone(),
                        kind,
                        probe,
                        started_at,
                        results.clone(),
                        started_tx.clone(),
                        started_rx.clone(),
                        wake.clone(),
                    )))
                })
                .collect();
            self.running.insert(id, Probing { results, tasks });
        }
    }

    /// `started` and `ready` of each app container whose newest attempt runs, by name, for
    /// the pod's status: without a startup probe a running container has started;
    /// without a readiness probe a started one is ready; with one, it is ready once the
    /// probe succeeded (false before its probes have run at all).
    pub fn view(
        &self,
        pod: &Pod,
        observed: &Observed,
    ) -> (BTreeMap<String, bool>, BTreeMap<String, bool>) {
        let mut started = BTreeMap::new();
        let mut ready = BTreeMap::new();
        for c in pod.spec.iter().flat_map(|s| s.containers.iter()) {
            let Some(a) = observed.get(&c.name).and_then(|a| a.last()) else {
                continue;
            };
            if !a.running() {
                continue;
            }
            let results = self
                .running
                .get(&a.state.id)
                .and_then(|p| p.results.lock().ok().map(|r| r.clone()))
                .unwrap_or(Results {
                    started: c.startup_probe.is_none(),
                    ..Default::default()
                });
            let has_started = c.startup_probe.is_none() || results.started;
            let is_ready = has_started && (c.readiness_probe.is_none() || results.ready);
            started.insert(c.name.clone(), has_started);
            ready.insert(c.name.clone(), is_ready);
        }
        (started, ready)
    }

    /// Running containers whose liveness or startup probe failed.
    pub fn failed(&self, observed: &Observed) -> Vec<Failed> {
        let mut out = Vec::new();
        for (name, attempts) in observed {
            let Some(a) = attempts.last().filter(|a| a.running()) else {
                continue;
            };
            let kind = self
                .running
                .get(&a.state.id)
                .and_then(|p| p.results.lock().ok().and_then(|r| r.failed));
            if let Some(kind) = kind {
                out.push(Failed {
                    name: name.clone(),
                    id: a.state.id.clone(),
                    kind,
                });
            }
        }
        out
    }

    /// Stop every probe (the pod is going away).
    pub fn clear(&mut self) {
        self.running.clear();
    }
}

/// Set `kind`'s new result; whether the container's results changed.
fn apply(results: &Mutex<Results>, kind: Kind, ok: bool) -> bool {
    let Ok(mut r) = results.lock() else {
        return false;
    };
    let before = r.clone();
    match (kind, ok) {
        (Kind::Startup, true) => r.started = true,
        (Kind::Readiness, ok) => r.ready = ok,
        (Kind::Liveness, true) => {}
        (Kind::Startup | Kind::Liveness, false) => r.failed = Some(kind),
    }
    *r != before
}

/// One probe of one container attempt, until it is aborted (the attempt stopped), its
/// startup probe succeeded, or its liveness/startup probe failed (on hold until the
/// container is replaced).
#[allow(clippy::too_many_arguments)]
async fn probe_loop(
    env: ProbeEnv,
    kind: Kind,
    probe: Probe,
    started_at: chrono::DateTime<Utc>,
    results: Arc<Mutex<Results>>,
    started_tx: Arc<watch::Sender<bool>>,
    mut started: watch::Receiver<bool>,
    wake: mpsc::UnboundedSender<Wake>,
) {
    if kind != Kind::Startup {
        while !*started.borrow_and_update() {
            if started.changed().await.is_err() {
                return;
            }
        }
    }
    let timing = Timing::of(&probe);
    let running_for = (Utc::now() - started_at).to_std().unwrap_or_default();
    tokio::time::sleep(timing.first_delay(running_for)).await;
    let mut ticks = tokio::time::interval(timing.period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tracker = Tracker::default();
    loop {
        ticks.tick().await;
        let outcome = run_probe(&env, &probe, timing.timeout).await;
        let ok = match outcome {
            Outcome::Success => true,
            Outcome::Failure(output) => {
                env.ctx
                    .recorder
                    .record(
                        &env.object,
                        EventType::Warning,
                        "Unhealthy",
                        &format!("{} probe failed: {}", kind.as_str(), output.trim_end()),
                    )
                    .await;
                false
            }
            Outcome::Error(e) => {
                env.ctx
                    .recorder
                    .record(
                        &env.object,
                        EventType::Warning,
                        "Unhealthy",
                        &format!("{} probe errored: {e}", kind.as_str()),
                    )
                    .await;
                continue;
            }
        };
        let Some(result) = tracker.observe(ok, &timing) else {
            continue;
        };
        if apply(&results, kind, result) {
            if kind == Kind::Startup && result {
                started_tx.send_replace(true);
            }
            let _ = wake.send(Wake::Probe);
        }
        match (kind, result) {
            (Kind::Startup, true) => return,
            (Kind::Startup | Kind::Liveness, false) => return,
            _ => {}
        }
    }
}

/// Which hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    PostStart,
    PreStop,
}

/// kubelet's `format.Pod`: `name_namespace(uid)`.
fn pod_text(pod: &Pod) -> String {
    format!(
        "{}_{}({})",
        pod.metadata.name.as_deref().unwrap_or(""),
        pod.metadata.namespace.as_deref().unwrap_or(""),
        pod.metadata.uid.as_deref().unwrap_or("")
    )
}

/// The container's hook of this kind, if it has one.
pub fn hook_of(c: &Container, hook: Hook) -> Option<&LifecycleHandler> {
    let l = c.lifecycle.as_ref()?;
    match hook {
        Hook::PostStart => l.post_start.as_ref(),
        Hook::PreStop => l.pre_stop.as_ref(),
    }
}

/// Run a lifecycle hook of `container` (attempt `container_id`); on failure kubelet's
/// message (the `FailedPostStartHook`/`FailedPreStopHook` event's text). An HTTP hook
/// fails only when no answer comes; its status code is not judged (as kubelet).
pub async fn run_hook(
    ctx: &NodeContext,
    pod: &Pod,
    container: &Container,
    container_id: &str,
    handler: &LifecycleHandler,
    pod_ip: &str,
) -> Result<(), String> {
    let who = format!(
        "for Container {:?} in Pod {:?}",
        container.name,
        pod_text(pod)
    );
    if let Some(action) = &handler.http_get {
        let path = action.path.clone().unwrap_or_default();
        let target = http_target(
            action,
            container,
            pod_ip,
            &format!("kube-lifecycle/{KUBE_VERSION}"),
        );
        let answer = match target {
            Ok(t) => http_get(&t, HOOK_HTTP_TIMEOUT).await.map(|_| ()),
            Err(e) => Err(e),
        };
        return answer
            .map_err(|e| format!("HTTP lifecycle hook ({path}) {who} failed - error: {e}"));
    }
    if let Some(action) = &handler.exec {
        let command = action.command.clone().unwrap_or_default();
        let shown = format!("[{}]", command.join(" "));
        return match exec_in_container(ctx, container_id, &command, Duration::MAX).await {
            Ok(out) if out.exit_code == 0 => Ok(()),
            Ok(out) => Err(format!(
                "Exec lifecycle hook ({shown}) {who} failed - error: command {shown} exited with {}, message: {:?}",
                out.exit_code, out.output
            )),
            Err(e) => Err(format!(
                "Exec lifecycle hook ({shown}) {who} failed - error: {e}, message: \"\""
            )),
        };
    }
    if let Some(sleep) = &handler.sleep {
        tokio::time::sleep(Duration::from_secs(
            u64::try_from(sleep.seconds).unwrap_or(0),
        ))
        .await;
        return Ok(());
    }
    Err("Cannot run handler: invalid handler: only httpGet, exec and sleep hooks run".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::pods::plan::{container_id, Attempt};
    use crate::runtime::{ContainerState, Status};

    fn probe(v: serde_json::Value) -> Probe {
        serde_json::from_value(v).expect("probe")
    }

    fn container(v: serde_json::Value) -> Container {
        serde_json::from_value(v).expect("container")
    }

    #[test]
    fn timing_has_the_api_defaults_and_waits_the_initial_delay() {
        let t = Timing::of(&probe(serde_json::json!({"httpGet": {"port": 80}})));
        assert_eq!(
            t,
            Timing {
                initial_delay: Duration::ZERO,
                period: Duration::from_secs(10),
                timeout: Duration::from_secs(1),
                success_threshold: 1,
                failure_threshold: 3,
            }
        );
        let t = Timing::of(&probe(serde_json::json!({
            "httpGet": {"port": 80}, "initialDelaySeconds": 5, "periodSeconds": 2,
            "timeoutSeconds": 3, "successThreshold": 2, "failureThreshold": 1
        })));
        assert_eq!(t.period, Duration::from_secs(2));
        assert_eq!(t.timeout, Duration::from_secs(3));
        assert_eq!(
            t.first_delay(Duration::from_secs(2)),
            Duration::from_secs(3)
        );
        assert_eq!(t.first_delay(Duration::from_secs(9)), Duration::ZERO);
    }

    #[test]
    fn results_change_only_after_their_threshold_in_a_row() {
        let t = Timing {
            success_threshold: 2,
            failure_threshold: 3,
            ..Timing::of(&Probe::default())
        };
        let mut tr = Tracker::default();
        assert_eq!(tr.observe(false, &t), None);
        assert_eq!(tr.observe(false, &t), None);
        // A success breaks the run of failures.
        assert_eq!(tr.observe(true, &t), None);
        assert_eq!(tr.observe(false, &t), None);
        assert_eq!(tr.observe(false, &t), None);
        assert_eq!(tr.observe(false, &t), Some(false));
        assert_eq!(tr.observe(false, &t), Some(false));
        assert_eq!(tr.observe(true, &t), None);
        assert_eq!(tr.observe(true, &t), Some(true));
    }

    #[test]
    fn http_status_codes_200_to_399_succeed() {
        assert_eq!(http_outcome(200), Outcome::Success);
        assert_eq!(http_outcome(302), Outcome::Success);
        assert_eq!(
            http_outcome(500),
            Outcome::Failure("HTTP probe failed with statuscode: 500".into())
        );
        assert!(matches!(http_outcome(404), Outcome::Failure(_)));
        assert!(matches!(http_outcome(199), Outcome::Failure(_)));
    }

    #[test]
    fn http_targets_default_to_the_pod_ip_and_resolve_named_ports() {
        let c = container(serde_json::json!({
            "name": "web", "ports": [{"name": "http", "containerPort": 8080}]
        }));
        let action: HTTPGetAction = serde_json::from_value(serde_json::json!({
            "port": "http", "path": "healthz",
            "httpHeaders": [{"name": "X-Probe", "value": "1"}, {"name": "user-agent", "value": "mine"}]
        }))
        .expect("action");
        let t = http_target(&action, &c, "10.42.0.7", "kube-probe/1.32").expect("target");
        assert_eq!(t.url(), "http://10.42.0.7:8080/healthz");
        assert_eq!(
            t.headers,
            vec![
                ("Host".to_string(), "10.42.0.7:8080".to_string()),
                ("Accept".to_string(), "*/*".to_string()),
                ("X-Probe".to_string(), "1".to_string()),
                ("user-agent".to_string(), "mine".to_string()),
            ]
        );
        let by_number: HTTPGetAction = serde_json::from_value(serde_json::json!({
            "port": 81, "host": "127.0.0.1", "scheme": "HTTPS"
        }))
        .expect("action");
        let t = http_target(&by_number, &c, "10.42.0.7", "kube-probe/1.32").expect("target");
        assert_eq!(t.url(), "https://127.0.0.1:81/");
        assert_eq!(
            t.headers[1],
            ("User-Agent".to_string(), "kube-probe/1.32".to_string())
        );
        let unknown: HTTPGetAction =
            serde_json::from_value(serde_json::json!({"port": "metrics"})).expect("action");
        let err = http_target(&unknown, &c, "10.42.0.7", "x").expect_err("unknown port name");
        assert!(err.contains("couldn't find port: metrics"), "{err}");
        assert_eq!(
            resolve_port(&IntOrString::String("9090".into()), &c),
            Ok(9090)
        );
    }

    /// A server on 127.0.0.1 that answers one request with `status`; the request's text.
    async fn answer_once(
        status: u16,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> (u16, tokio::task::JoinHandle<String>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let served = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.expect("accept");
            trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
            impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}
            let mut stream: Box<dyn Io> = match tls {
                Some(acceptor) => Box::new(acceptor.accept(stream).await.expect("tls accept")),
                None => Box::new(stream),
            };
            let mut buf = vec![0u8; 4096];
            let n = stream.read(&mut buf).await.expect("read");
            let reply = format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n");
            stream.write_all(reply.as_bytes()).await.expect("write");
            String::from_utf8_lossy(&buf[..n]).into_owned()
        });
        (port, served)
    }

    fn target(scheme: &str, port: u16) -> HttpTarget {
        let action: HTTPGetAction = serde_json::from_value(serde_json::json!({
            "port": port, "path": "/healthz", "scheme": scheme
        }))
        .expect("action");
        http_target(
            &action,
            &Container::default(),
            "127.0.0.1",
            "kube-probe/1.32",
        )
        .expect("target")
    }

    #[tokio::test]
    async fn http_probes_send_kubelets_headers_and_read_the_status() {
        let (port, served) = answer_once(503, None).await;
        let status = http_get(&target("HTTP", port), Duration::from_secs(5)).await;
        assert_eq!(status, Ok(503));
        let request = served.await.expect("server");
        assert!(
            request.starts_with("GET /healthz HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(
            request.contains("User-Agent: kube-probe/1.32\r\n"),
            "{request}"
        );
        assert!(
            request.contains(&format!("Host: 127.0.0.1:{port}\r\n")),
            "{request}"
        );

        // Nothing listens there any more.
        let refused = http_get(&target("HTTP", port), Duration::from_secs(5))
            .await
            .expect_err("refused");
        assert_eq!(
            refused,
            format!(
                "Get \"http://127.0.0.1:{port}/healthz\": dial tcp 127.0.0.1:{port}: connect: connection refused"
            )
        );
    }

    #[tokio::test]
    async fn https_probes_skip_certificate_verification() {
        let key = rcgen::generate_simple_self_signed(vec!["probe.test".into()]).expect("cert");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![key.cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.key_pair.serialize_der().into()),
            )
            .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let (port, served) = answer_once(204, Some(acceptor)).await;
        let status = http_get(&target("HTTPS", port), Duration::from_secs(5)).await;
        assert_eq!(status, Ok(204));
        assert!(served.await.expect("server").starts_with("GET /healthz"));
    }

    #[tokio::test]
    async fn a_silent_server_times_the_probe_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let err = http_get(&target("HTTP", port), Duration::from_millis(300))
            .await
            .expect_err("timeout");
        assert!(err.contains("context deadline exceeded"), "{err}");
        drop(listener);
    }

    fn running(name: &str, n: u32) -> Attempt {
        Attempt {
            attempt: n,
            state: ContainerState {
                id: container_id("u1", name, n),
                status: Status::Running,
                pid: 1,
                shim_pid: 1,
                started_at: Utc::now().to_rfc3339(),
                exit: None,
                log_path: "/x".into(),
                cgroups_path: "/x".into(),
                image: String::new(),
            },
        }
    }

    fn probed_pod() -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
            "spec": {"containers": [
                {"name": "plain", "image": "i"},
                {"name": "gated", "image": "i", "readinessProbe": {"tcpSocket": {"port": 80}}},
                {"name": "slow", "image": "i", "startupProbe": {"tcpSocket": {"port": 80}},
                 "readinessProbe": {"tcpSocket": {"port": 80}}},
                {"name": "alive", "image": "i", "livenessProbe": {"tcpSocket": {"port": 80}}},
            ]}
        }))
        .expect("pod")
    }

    #[test]
    fn readiness_and_started_follow_the_probe_results() {
        let pod = probed_pod();
        let observed: Observed = ["plain", "gated", "slow", "alive"]
            .into_iter()
            .map(|n| (n.to_string(), vec![running(n, 0)]))
            .collect();
        let mut probes = PodProbes::default();
        // Before any probe has run: probed containers are not ready; a startup probe
        // holds `started` back.
        let (started, ready) = probes.view(&pod, &observed);
        assert!(ready["plain"]);
        assert!(ready["alive"]);
        assert!(!ready["gated"]);
        assert_eq!((started["slow"], ready["slow"]), (false, false));
        assert!(started["gated"]);

        let results = |started: bool, ready: bool, failed: Option<Kind>| Probing {
            results: Arc::new(Mutex::new(Results {
                started,
                ready,
                failed,
            })),
            tasks: Vec::new(),
        };
        probes
            .running
            .insert(container_id("u1", "gated", 0), results(true, true, None));
        probes
            .running
            .insert(container_id("u1", "slow", 0), results(false, true, None));
        probes.running.insert(
            container_id("u1", "alive", 0),
            results(true, false, Some(Kind::Liveness)),
        );
        let (started, ready) = probes.view(&pod, &observed);
        assert!(ready["gated"]);
        assert_eq!(
            (started["slow"], ready["slow"]),
            (false, false),
            "not ready before started"
        );
        assert_eq!(
            probes.failed(&observed),
            vec![Failed {
                name: "alive".into(),
                id: container_id("u1", "alive", 0),
                kind: Kind::Liveness
            }]
        );
        // A newer attempt is not judged by its predecessor's results.
        let restarted: Observed = [("gated".to_string(), vec![running("gated", 1)])].into();
        let (_, ready) = probes.view(&pod, &restarted);
        assert!(!ready["gated"]);
    }

    #[test]
    fn results_apply_per_kind() {
        let r = Mutex::new(Results::default());
        assert!(apply(&r, Kind::Readiness, true));
        assert!(!apply(&r, Kind::Readiness, true), "unchanged");
        assert!(apply(&r, Kind::Startup, true));
        assert!(!apply(&r, Kind::Liveness, true));
        assert!(apply(&r, Kind::Liveness, false));
        let now = r.lock().expect("lock").clone();
        assert_eq!(
            now,
            Results {
                started: true,
                ready: true,
                failed: Some(Kind::Liveness)
            }
        );
    }
}
