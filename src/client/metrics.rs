//! Sending a node's resource usage to the API server's metrics store
//! (`PUT /apis/skiff.io/v1/nodemetrics/{node}`, see [`crate::api::metrics`]): the report
//! types, the quantity forms usage is written in, the report interval flag, and the
//! request itself. Both usage sources use it: the real node (`agent::metrics`, from
//! cgroups and /proc) and `skiff simulate`'s fake kubelets.

use std::time::Duration;

use crate::api::metrics::REPORT_PREFIX;
pub use crate::api::metrics::{ContainerMetrics, NodeUsageReport, PodUsage, Usage};
use crate::apimachinery::quantity::{Quantity, QuantityFormat};

const NANO: i128 = 1_000_000_000;

/// Why a report did not arrive.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("encoding the usage report of node {node}: {source}")]
    Encode {
        node: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("building the usage report request of node {node}: {source}")]
    Request {
        node: String,
        #[source]
        source: http::Error,
    },
    #[error("sending the usage report of node {node}: {source}")]
    Send {
        node: String,
        #[source]
        source: Box<kube::Error>,
    },
}

/// CPU in nano-cores as metrics-server writes it (`250m`, `1500m`, `12345n`).
pub fn cpu_quantity(nano_cores: i128) -> String {
    Quantity {
        nano: nano_cores.max(0),
        format: QuantityFormat::DecimalSI,
    }
    .canonical()
}

/// Memory in bytes, binary units where they divide (`4Mi`, `1Gi`, `12345678`).
pub fn memory_quantity(bytes: i128) -> String {
    Quantity {
        nano: bytes.max(0) * NANO,
        format: QuantityFormat::BinarySI,
    }
    .canonical()
}

/// A usage map with `cpu` and `memory`.
pub fn usage(nano_cores: i128, memory_bytes: i128) -> Usage {
    Usage::from([
        ("cpu".to_string(), cpu_quantity(nano_cores)),
        ("memory".to_string(), memory_quantity(memory_bytes)),
    ])
}

/// Parse `--metrics-interval` (`15s`, `1s`, `500ms`, `2m`; `0` turns reporting off).
pub fn parse_interval(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if matches!(s, "0" | "0s") {
        return Ok(Duration::ZERO);
    }
    let (number, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = number
        .parse()
        .map_err(|_| format!("expected a duration like 15s or 500ms, got {s:?}"))?;
    let seconds = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        other => return Err(format!("unknown duration unit {other:?} (use ms, s or m)")),
    };
    if !seconds.is_finite() || seconds < 0.1 {
        return Err(format!("{s:?} is shorter than 100ms"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Send `report` as the usage of `node` (replacing its previous report).
pub async fn send_usage_report(
    client: &kube::Client,
    node: &str,
    report: &NodeUsageReport,
) -> Result<(), ReportError> {
    let body = serde_json::to_vec(report).map_err(|source| ReportError::Encode {
        node: node.to_string(),
        source,
    })?;
    let req = http::Request::put(format!("{REPORT_PREFIX}/{node}"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(body)
        .map_err(|source| ReportError::Request {
            node: node.to_string(),
            source,
        })?;
    client
        .request_text(req)
        .await
        .map_err(|source| ReportError::Send {
            node: node.to_string(),
            source: Box::new(source),
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(cpu_quantity(250_000_000), "250m");
        assert_eq!(cpu_quantity(12_345), "12345n");
        assert_eq!(cpu_quantity(-5), "0");
        assert_eq!(memory_quantity(4 << 20), "4Mi");
        assert_eq!(memory_quantity(12_345), "12345");
        assert_eq!(memory_quantity(1000), "1k");
        let u = usage(1_000_000_000, 1 << 30);
        assert_eq!(u["cpu"], "1");
        assert_eq!(u["memory"], "1Gi");
    }

    #[test]
    fn intervals_parse() {
        assert_eq!(parse_interval("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_interval("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_interval("2"), Ok(Duration::from_secs(2)));
        assert!(parse_interval("1h").is_err());
        assert_eq!(parse_interval("0"), Ok(Duration::ZERO));
        assert!(parse_interval("10ms").is_err());
    }
}
