// Licensed to the Apache Software Foundation (ASF) under one
// or more contributor license agreements.  See the NOTICE file
// distributed with this work for additional information
// regarding copyright ownership.  The ASF licenses this file
// to you under the Apache License, Version 2.0 (the
// "License"); you may not use this file except in compliance
// with the License.  You may obtain a copy of the License at
//
//   http://www.apache.org/licenses/LICENSE-2.0
//
// Unless required by applicable law or agreed to in writing,
// software distributed under the License is distributed on an
// "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY
// KIND, either express or implied.  See the License for the
// specific language governing permissions and limitations
// under the License.

//! (lifecycle patch) One credential per process for every call between the cluster's
//! processes: a shared token that every client sends (`authorization: Bearer <token>`) and every
//! server checks before it decodes the call, and optionally TLS.
//!
//! The credential is set once, at start-up, by the process (scheduler, executor or client);
//! without one, calls carry nothing and servers check nothing (Ballista's behaviour). Every
//! gRPC and Flight client Ballista makes goes through [`AuthInterceptor`] (directly, or through
//! [`crate::extension::BallistaGrpcMetadataInterceptor`]) and [`client_endpoint`]; every server
//! wraps its services with [`check`] and [`server_tls`].

use std::sync::{Arc, OnceLock};

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint, ServerTlsConfig};
use tonic::{Request, Status};

/// What every call of this process sends and every server of this process requires.
#[derive(Clone, Default)]
pub struct Credential {
    /// The shared token; `None`: no authentication.
    pub token: Option<Arc<str>>,
    /// TLS for the process's clients (the trust roots); `None`: plaintext.
    pub client_tls: Option<ClientTlsConfig>,
    /// TLS for the process's servers (the identity); `None`: plaintext.
    pub server_tls: Option<ServerTlsConfig>,
}

static CREDENTIAL: OnceLock<Credential> = OnceLock::new();

/// Sets this process's credential; `false` if one was set before (the first one stays).
pub fn set_credential(credential: Credential) -> bool {
    CREDENTIAL.set(credential).is_ok()
}

fn credential() -> Option<&'static Credential> {
    CREDENTIAL.get()
}

fn bearer() -> Option<MetadataValue<Ascii>> {
    let token = credential()?.token.as_ref()?;
    format!("Bearer {token}").parse().ok()
}

/// Adds `authorization: Bearer <token>` to a call (when the process has a token).
pub fn authorize<T>(request: &mut Request<T>) {
    if let Some(value) = bearer() {
        request.metadata_mut().insert("authorization", value);
    }
}

/// The client side: adds the token to every call.
#[derive(Clone, Copy, Debug, Default)]
pub struct AuthInterceptor;

impl Interceptor for AuthInterceptor {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        authorize(&mut request);
        Ok(request)
    }
}

/// A channel whose calls carry the token.
pub type AuthChannel = InterceptedService<Channel, AuthInterceptor>;

/// `channel`, with the token on every call.
pub fn authenticated(channel: Channel) -> AuthChannel {
    InterceptedService::new(channel, AuthInterceptor)
}

/// Equality of two secrets in time that depends on their lengths only.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The server side: refuses a call without the process's token (constant time, on the call's
/// headers, before its message is decoded). Without a token, every call passes.
pub fn check(request: Request<()>) -> Result<Request<()>, Status> {
    let Some(token) = credential().and_then(|c| c.token.as_ref()) else {
        return Ok(request);
    };
    let sent = request
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if constant_time_eq(sent.as_bytes(), token.as_bytes()) {
        Ok(request)
    } else {
        Err(Status::unauthenticated(
            "missing or invalid cluster token: give every process of the cluster the same \
             --token-file",
        ))
    }
}

/// The server-side check as a function pointer type (for `InterceptedService<S, CheckFn>`).
pub type CheckFn = fn(Request<()>) -> Result<Request<()>, Status>;

/// `service`, answering only calls that carry the token.
pub fn checked<S>(service: S) -> InterceptedService<S, CheckFn> {
    InterceptedService::new(service, check as CheckFn)
}

/// The TLS identity of this process's servers, if any.
pub fn server_tls() -> Option<ServerTlsConfig> {
    credential()?.server_tls.clone()
}

/// Whether this process's clients use TLS.
pub fn client_uses_tls() -> bool {
    credential().is_some_and(|c| c.client_tls.is_some())
}

/// A new endpoint (no settings yet) with this process's client TLS: `http://` becomes
/// `https://`, with the trust roots. Without client TLS, `endpoint` as it is.
pub fn client_endpoint(endpoint: Endpoint) -> Result<Endpoint, tonic::transport::Error> {
    let Some(tls) = credential().and_then(|c| c.client_tls.clone()) else {
        return Ok(endpoint);
    };
    let uri = endpoint.uri();
    let endpoint = if uri.scheme_str() == Some("http") {
        let authority = uri.authority().map(|a| a.as_str()).unwrap_or_default();
        let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("");
        Endpoint::from_shared(format!("https://{authority}{path}"))?
    } else {
        endpoint
    };
    endpoint.tls_config(tls)
}
