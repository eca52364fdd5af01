//! `skiff kubectl …`: run the system kubectl with skiff's admin kubeconfig (unless the
//! user set KUBECONFIG), like `k3s kubectl`.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;

use super::CliError;

pub fn run(args: Vec<OsString>) -> Result<(), CliError> {
    let program = ["/usr/local/bin/kubectl", "/usr/bin/kubectl"]
        .iter()
        .find(|p| std::path::Path::new(p).exists())
        .map(|p| p.to_string())
        .unwrap_or_else(|| "kubectl".to_string());
    let mut cmd = std::process::Command::new(&program);
    cmd.args(args);
    if std::env::var_os("KUBECONFIG").is_none() {
        cmd.env("KUBECONFIG", super::default_kubeconfig());
    }
    let source = cmd.exec();
    Err(CliError::Exec { program, source })
}
