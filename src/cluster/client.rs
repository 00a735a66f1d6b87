//! A client's session on the cluster (`--cluster df://HOST:PORT` on `sql`, `serve` and `report`):
//! planned here, run there.

use std::sync::Arc;

use ballista::prelude::SessionContextExt;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::SessionContext;

use super::{cluster_config, errors, lifecycle_state, runtime, security};
use crate::engine::config::{ClusterClient, SCHEME, TLS_SCHEME, host_port};
use crate::engine::storage::Stores;

/// A session on the cluster: planned here, run there. Fails at once, naming the address, when
/// no scheduler answers or it refuses this client's token.
pub async fn connect(client: &ClusterClient, stores: Arc<Stores>) -> Result<SessionContext> {
    let url = client.url.as_str();
    security::install(security::client_credential(
        url,
        client.token_file.as_deref(),
        client.ca.as_deref(),
    )?)?;
    probe_scheduler(url).await?;
    let state = lifecycle_state(cluster_config(), runtime(&stores, None)?);
    let ctx =
        SessionContext::remote_with_state(&format!("{SCHEME}{}", host_port(url)), state).await?;
    client_session(ctx)
}

/// A Ballista client session as every lifecycle client has it: the lifecycle functions (Ballista's
/// upgrade of the state replaced the function lists with its built-ins), and the query planner
/// that loads the stores a plan reads at their newest version and makes every error one line
/// ([`errors::Planner`]).
pub(crate) fn client_session(ctx: SessionContext) -> Result<SessionContext> {
    lifecycle_udfs::register_all(&ctx)?;
    let state = ctx.state();
    let planner = Arc::new(errors::Planner {
        inner: state.query_planner().clone(),
    });
    Ok(SessionContext::new_with_state(
        SessionStateBuilder::new_from_existing(state)
            .with_query_planner(planner)
            .build(),
    ))
}

/// Connects to the scheduler and makes one call, so that a wrong address, a missing or wrong
/// token and a TLS mismatch are one clear error before any query.
async fn probe_scheduler(url: &str) -> Result<()> {
    use ballista_core::serde::protobuf::GetJobStatusParams;
    use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;
    let unreachable = |why: String| {
        DataFusionError::Configuration(format!(
            "cannot reach the cluster's scheduler at {url}: {why}"
        ))
    };
    let endpoint = ballista_core::utils::create_grpc_client_endpoint(
        format!("http://{}", host_port(url)),
        None,
    )
    .map_err(|e| unreachable(e.to_string()))?
    .connect_timeout(std::time::Duration::from_secs(10));
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| unreachable(transport_reason(&e)))?;
    let mut scheduler = SchedulerGrpcClient::new(ballista_core::auth::authenticated(channel));
    let probe = GetJobStatusParams {
        job_id: "lifecycle-connection-check".into(),
    };
    match scheduler.get_job_status(probe).await {
        Ok(_) => Ok(()),
        Err(s) if s.code() == tonic::Code::Unauthenticated => {
            Err(DataFusionError::Configuration(format!(
                "the cluster's scheduler at {url} refused this client: it needs the cluster's \
                 token (--token-file FILE, on serve --cluster-token-file FILE)"
            )))
        }
        // An answer about the (unknown) job comes from a scheduler that let the call in;
        // anything else is a transport failure (plaintext to a TLS scheduler ends as an HTTP/2
        // protocol error, for one).
        Err(s) if s.code() == tonic::Code::Internal && s.message().contains("lifecycle-") => Ok(()),
        Err(s) => {
            let why = match std::error::Error::source(&s) {
                Some(inner) => transport_reason(inner),
                None => s.message().to_string(),
            };
            let hint = if url.starts_with(TLS_SCHEME) {
                ""
            } else {
                " (a scheduler started with --tls-cert is reached at dfs://)"
            };
            Err(unreachable(format!("{why}{hint}")))
        }
    }
}

/// The innermost reason of a transport error ("Connection refused", "invalid peer
/// certificate", ...), not tonic's "transport error" wrapping.
fn transport_reason(e: &(dyn std::error::Error + 'static)) -> String {
    let mut inner: &(dyn std::error::Error + 'static) = e;
    while let Some(source) = inner.source() {
        inner = source;
    }
    inner.to_string()
}
