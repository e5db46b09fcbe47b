//! The tower layer that scopes every request of a data service for the profiler.
use crate::profiler::profile_rpc;

/// Runs every request inside [`profile_rpc`], so the SQL it causes is counted
/// per RPC and N+1 patterns are reported with the RPC's name.
#[derive(Debug, Clone, Copy)]
pub struct ProfileLayer;

impl<S> tower::Layer<S> for ProfileLayer {
    type Service = Profiled<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Profiled(inner)
    }
}

#[derive(Debug, Clone)]
pub struct Profiled<S>(S);

impl<S, B> tower::Service<http::Request<B>> for Profiled<S>
where
    S: tower::Service<http::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = futures::future::BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let rpc = request.uri().path().to_owned();
        Box::pin(profile_rpc(rpc, self.0.call(request)))
    }
}

/// `routes` with every call scoped for the profiler (health and reflection, added later by the
/// server, stay outside: they run no SQL).
pub fn profiled(routes: tonic::service::Routes) -> tonic::service::Routes {
    tonic::service::Routes::from(routes.into_axum_router().layer(ProfileLayer))
}
