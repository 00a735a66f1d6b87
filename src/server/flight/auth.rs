//! Authentication: with a token, every call must carry it (Bearer, or Basic with the token as
//! password), checked in constant time by an interceptor before the call's message is decoded.

use std::sync::Arc;

use base64::Engine;
use base64::prelude::BASE64_STANDARD_NO_PAD;
use subtle::ConstantTimeEq;
use tonic::{Request, Status};

/// Equality of two secrets in time that depends on their lengths only, not on where they differ
/// (`subtle`, whose comparison the optimizer cannot turn back into an early exit).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    bool::from(a.ct_eq(b))
}

/// Whether request metadata carries the token: `authorization: Bearer <token>`, or Basic with the
/// token as the password (any user).
pub(super) fn authorized(token: &str, metadata: &tonic::metadata::MetadataMap) -> bool {
    let header = metadata
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if let Some(t) = header.strip_prefix("Bearer ") {
        return constant_time_eq(t.as_bytes(), token.as_bytes());
    }
    basic_credentials(header)
        .is_some_and(|(_, pass)| constant_time_eq(pass.as_bytes(), token.as_bytes()))
}

/// Checks the token on every call before the call's message is even decoded (a tonic
/// interceptor runs on the request headers): without valid credentials, every method,
/// `list_actions` and a garbage ticket included, answers Unauthenticated and nothing else.
#[derive(Clone)]
pub(crate) struct Authenticate {
    pub(crate) token: Option<Arc<str>>,
    /// Failed authentications per address: an address that failed recently is refused for a
    /// time that grows with its failures, valid credentials or not (an interceptor cannot hold
    /// its answer back, so the wait is imposed on the next attempt).
    pub(crate) delays: Arc<crate::server::auth_delay::AuthDelays>,
    /// The listener's connections: a call on a connection beyond `--max-connections` is
    /// refused, and one with valid credentials lets its connection stay.
    pub(crate) admission: super::admission::Admission,
}

impl tonic::service::Interceptor for Authenticate {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let peer = request.remote_addr();
        if let Err(super::admission::Refusal::TooManyConnections(max)) = self.admission.check(peer)
        {
            return Err(Status::resource_exhausted(format!(
                "too many connections: this server accepts at most {max} at once \
                 (--max-connections)"
            )));
        }
        let Some(token) = &self.token else {
            self.admission.authenticated(peer);
            return Ok(request);
        };
        let ip = peer.map(|p| p.ip());
        if let Some(wait) = ip.and_then(|ip| self.delays.locked_for(ip)) {
            return Err(Status::unauthenticated(format!(
                "too many failed authentications from this address: try again in {:.1} s",
                wait.as_secs_f64()
            )));
        }
        if authorized(token, request.metadata()) {
            if let Some(ip) = ip {
                self.delays.succeeded(ip);
            }
            self.admission.authenticated(peer);
            Ok(request)
        } else {
            // A call that presents credentials and fails counts; one without any (a client's
            // first probe) does not.
            if let Some(ip) = ip
                && request.metadata().get("authorization").is_some()
            {
                self.delays.failed(ip);
            }
            Err(Status::unauthenticated(
                "missing or invalid credentials: send 'authorization: Bearer <token>'",
            ))
        }
    }
}

fn basic_credentials(header: &str) -> Option<(String, String)> {
    let encoded = header.strip_prefix("Basic ")?;
    // Padding is optional: Go clients (ADBC's Flight SQL driver) send unpadded base64.
    let decoded = BASE64_STANDARD_NO_PAD
        .decode(encoded.trim().trim_end_matches('='))
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some((user.to_string(), pass.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth() {
        use base64::prelude::BASE64_STANDARD;
        let h = format!("Basic {}", BASE64_STANDARD.encode("user:s3cret"));
        assert_eq!(
            basic_credentials(&h),
            Some(("user".into(), "s3cret".into()))
        );
        // Unpadded, as Go's base64.RawStdEncoding (ADBC) sends it.
        let h = format!("Basic {}", BASE64_STANDARD_NO_PAD.encode("user:s3cret"));
        assert_eq!(
            basic_credentials(&h),
            Some(("user".into(), "s3cret".into()))
        );
        assert_eq!(basic_credentials("Bearer x"), None);
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"s3cret", b"s3cret"));
        assert!(!constant_time_eq(b"s3cret", b"s3creT"));
        assert!(!constant_time_eq(b"s3cret", b"s3cre"));
    }
}
