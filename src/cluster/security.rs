//! Who may use the cluster: one shared token on every call between its processes and from its
//! clients, checked (in constant time, before a call's message is decoded) by the scheduler's
//! and every executor's gRPC and Flight services; optionally TLS on all of them.
//!
//! The mechanism lives in the patched Ballista (`third_party/ballista-core/src/auth.rs`): each
//! process sets its [`Credential`] once at start-up, and every client and server Ballista makes
//! uses it. This module builds that credential from the command line.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ballista_core::auth::Credential;
use datafusion::error::{DataFusionError, Result};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

use crate::engine::config::{SCHEME, TLS_SCHEME};
use crate::engine::secrets::{read_pem, read_token_file};

/// The token file and TLS files of a scheduler or executor (`--token-file`, `--tls-cert`,
/// `--tls-key`, `--tls-ca`).
#[derive(Debug, Clone, Default)]
pub struct NodeSecurity {
    pub token_file: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Default: `tls_cert` itself, for a cluster sharing one self-signed certificate.
    pub tls_ca: Option<PathBuf>,
}

impl NodeSecurity {
    /// The credential of a scheduler or executor process.
    pub fn credential(&self) -> Result<Credential> {
        let token = self
            .token_file
            .as_deref()
            .map(read_token_file)
            .transpose()?
            .map(Arc::from);
        let (client_tls, server_tls) = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => {
                let cert_pem = read_pem("certificate", cert)?;
                let key_pem = read_pem("key", key)?;
                let server =
                    ServerTlsConfig::new().identity(Identity::from_pem(&cert_pem, key_pem));
                check_server_tls(&server, cert)?;
                let ca = match &self.tls_ca {
                    Some(ca) => read_pem("certificate authority", ca)?,
                    None => cert_pem,
                };
                (Some(client_tls(ca)), Some(server))
            }
            _ => (None, None),
        };
        Ok(Credential {
            token,
            client_tls,
            server_tls,
        })
    }
}

/// TLS for a client that trusts the certificate authority in `ca_pem`.
fn client_tls(ca_pem: Vec<u8>) -> ClientTlsConfig {
    ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca_pem))
}

/// Fails at start-up, naming the file, when a certificate and key do not make a TLS server
/// (rather than when the first connection arrives, or never).
fn check_server_tls(tls: &ServerTlsConfig, cert: &Path) -> Result<()> {
    tonic::transport::Server::builder()
        .tls_config(tls.clone())
        .map(|_| ())
        .map_err(|e| {
            DataFusionError::Configuration(format!(
                "cannot serve TLS with certificate '{}' and its key: {e}",
                cert.display()
            ))
        })
}

/// The credential of a client of the cluster (`sql`, `report` or `serve` with `--cluster`):
/// its token, and TLS when the address is `dfs://` (trusting `ca`).
pub fn client_credential(
    url: &str,
    token_file: Option<&Path>,
    ca: Option<&Path>,
) -> Result<Credential> {
    let token = token_file.map(read_token_file).transpose()?.map(Arc::from);
    let client_tls = if url.starts_with(TLS_SCHEME) {
        let ca = ca.ok_or_else(|| {
            DataFusionError::Configuration(format!(
                "--cluster {url} is TLS: give --cluster-ca FILE, the certificate (or its \
                 authority, PEM) the cluster's processes serve with"
            ))
        })?;
        Some(client_tls(read_pem("certificate authority", ca)?))
    } else {
        if ca.is_some() {
            return Err(DataFusionError::Configuration(format!(
                "--cluster-ca is for a TLS cluster: write the address as dfs://{}",
                url.trim_start_matches(SCHEME)
            )));
        }
        None
    };
    Ok(Credential {
        token,
        client_tls,
        server_tls: None,
    })
}

/// Sets this process's credential, once: a process talks to its clusters with one token and one
/// TLS configuration, so a second session with other credentials is an error (the same
/// token without TLS, or none, is the same credential).
pub fn install(credential: Credential) -> Result<()> {
    static INSTALLED: std::sync::OnceLock<(Option<Arc<str>>, bool)> = std::sync::OnceLock::new();
    let tls = credential.client_tls.is_some() || credential.server_tls.is_some();
    let key = (credential.token.clone(), tls);
    if let Some(before) = INSTALLED.get() {
        return if *before == key && !tls {
            Ok(())
        } else {
            Err(DataFusionError::Configuration(
                "this process already uses a cluster with other credentials (one token and one \
                 TLS configuration per process)"
                    .into(),
            ))
        };
    }
    if ballista_core::auth::set_credential(credential) {
        let _ = INSTALLED.set(key);
        Ok(())
    } else {
        Err(DataFusionError::Configuration(
            "this process already uses a cluster with other credentials".into(),
        ))
    }
}
