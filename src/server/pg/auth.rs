//! Authentication and TLS: SCRAM-SHA-256 with the token as every user's password, TLS from PEM
//! files (any problem a startup error, never a plaintext fallback).

use super::*;

/// SCRAM's iteration count (RFC 7677's minimum and PostgreSQL's default).
pub(super) const SCRAM_ITERATIONS: usize = 4096;

/// A TLS acceptor from PEM files; any problem is an error (never a plaintext fallback).
pub(super) fn tls_acceptor(cert: &Path, key: &Path) -> datafusion::error::Result<TlsAcceptor> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |what: &str, p: &Path, e: String| {
        DataFusionError::Configuration(format!("cannot load TLS {what} '{}': {e}", p.display()))
    };
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad("certificate", cert, e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad("certificate", cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("certificate", cert, "no certificate in it".into()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| bad("key", key, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad("certificate", cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| bad("certificate and key", cert, e.to_string()))?;
    // PostgreSQL 17's direct TLS negotiation requires the ALPN protocol name.
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The token as every user's password, salted once per server start (SCRAM never sends it).
#[derive(Debug)]
pub(super) struct TokenSource {
    pub(super) salt: Vec<u8>,
    pub(super) salted: Vec<u8>,
}

impl TokenSource {
    pub(super) fn new(token: &str) -> Self {
        // 16 unpredictable bytes: std's hasher keys come from the operating system's randomness.
        let mut salt = Vec::with_capacity(16);
        for _ in 0..2 {
            let h = std::collections::hash_map::RandomState::new().build_hasher();
            salt.extend_from_slice(&h.finish().to_le_bytes());
        }
        let salted = gen_salted_password(token, &salt, SCRAM_ITERATIONS);
        Self { salt, salted }
    }
}

#[async_trait]
impl AuthSource for TokenSource {
    async fn get_password(&self, _login: &LoginInfo) -> PgWireResult<Password> {
        Ok(Password::new(Some(self.salt.clone()), self.salted.clone()))
    }
}

/// No authentication (no `--token-file`).
pub(super) struct Open;

impl NoopStartupHandler for Open {}

/// Startup: TLS first when the server has a certificate (as Flight SQL, which serves TLS only),
/// then the password when it has a token.
pub(super) struct PgStartup {
    pub(super) require_tls: bool,
    pub(super) auth: Auth,
}

pub(super) enum Auth {
    Open(Open),
    Scram(Box<SASLAuthStartupHandler<DefaultServerParameterProvider>>),
}

#[async_trait]
impl StartupHandler for PgStartup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if self.require_tls
            && !client.is_secure()
            && matches!(message, PgWireFrontendMessage::Startup(_))
        {
            return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                "FATAL".into(),
                "28000".into(),
                "this server accepts TLS connections only: connect with sslmode=require".into(),
            ))));
        }
        match &self.auth {
            Auth::Open(h) => h.on_startup(client, message).await,
            Auth::Scram(h) => h.on_startup(client, message).await,
        }
    }
}
