//! The `learnhub.cache.v1.CacheService` handlers: validate the request, call the cache, map back.
use std::time::Duration;

use learnhub_proto::cache::v1::{
    CacheStats, ClearRequest, ClearResponse, DeleteRequest, DeleteResponse, GetManyRequest,
    GetManyResponse, GetRequest, GetResponse, GetStatsRequest, InvalidatePatternRequest,
    InvalidatePatternResponse, ResetStatsRequest, ResetStatsResponse, SetManyRequest,
    SetManyResponse, SetRequest, SetResponse, cache_service_server::CacheService,
};
use tonic::{Request, Response, Status};

use crate::{
    cache::Cache,
    error::Error,
    key::{Key, Pattern},
    store::{Lookup, SetEntry},
};

/// Longest TTL accepted.
pub const MAX_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// Most keys or entries in one batch call.
pub const MAX_BATCH: usize = 10_000;

/// Request limits.
#[derive(Debug, Clone)]
pub struct Limits {
    pub default_ttl: Duration,
    pub max_value_bytes: usize,
}

pub struct CacheApi {
    cache: Cache,
    limits: Limits,
}

impl CacheApi {
    pub fn new(cache: Cache, limits: Limits) -> Self {
        Self { cache, limits }
    }

    fn set_entry(&self, request: SetRequest, field: &str) -> Result<SetEntry, Error> {
        let key = Key::parse(request.key, &join(field, "key"))?;
        if request.value.len() > self.limits.max_value_bytes {
            return Err(Error::invalid(
                &join(field, "value"),
                format!(
                    "is {} bytes, at most {} allowed",
                    request.value.len(),
                    self.limits.max_value_bytes
                ),
            ));
        }
        let ttl = match request.ttl_seconds {
            0 => self.limits.default_ttl,
            secs => Duration::from_secs(u64::from(secs)),
        };
        if ttl > MAX_TTL {
            return Err(Error::invalid(
                &join(field, "ttl_seconds"),
                format!("is {} s, at most 30 days allowed", ttl.as_secs()),
            ));
        }
        Ok(SetEntry {
            key,
            value: request.value,
            ttl,
            lease: request.lease,
        })
    }
}

#[tonic::async_trait]
impl CacheService for CacheApi {
    #[tracing::instrument(level = "debug", skip_all)]
    async fn get(&self, request: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        let key = Key::parse(request.into_inner().key, "key")?;
        let mut found = self.cache.get_many(std::slice::from_ref(&key)).await;
        let entry = found.pop().map(response).unwrap_or_default();
        Ok(Response::new(entry))
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn get_many(
        &self,
        request: Request<GetManyRequest>,
    ) -> Result<Response<GetManyResponse>, Status> {
        let keys = parse_keys(request.into_inner().keys)?;
        let found = self.cache.get_many(&keys).await;
        Ok(Response::new(GetManyResponse {
            entries: found.into_iter().map(response).collect(),
        }))
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn set(&self, request: Request<SetRequest>) -> Result<Response<SetResponse>, Status> {
        let entry = self.set_entry(request.into_inner(), "")?;
        let stored = self.cache.set_many(std::slice::from_ref(&entry)).await;
        Ok(Response::new(SetResponse {
            stored: stored.first().copied().unwrap_or(false),
        }))
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn set_many(
        &self,
        request: Request<SetManyRequest>,
    ) -> Result<Response<SetManyResponse>, Status> {
        let entries = request.into_inner().entries;
        check_batch(entries.len(), "entries")?;
        let entries = entries
            .into_iter()
            .enumerate()
            .map(|(i, entry)| self.set_entry(entry, &format!("entries[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        let stored = self.cache.set_many(&entries).await;
        Ok(Response::new(SetManyResponse { stored }))
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn delete(
        &self,
        request: Request<DeleteRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        let keys = parse_keys(request.into_inner().keys)?;
        let deleted = self.cache.delete(&keys).await;
        Ok(Response::new(DeleteResponse { deleted }))
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn invalidate_pattern(
        &self,
        request: Request<InvalidatePatternRequest>,
    ) -> Result<Response<InvalidatePatternResponse>, Status> {
        let pattern = Pattern::parse(&request.into_inner().pattern)?;
        let removed = self.cache.invalidate(&pattern).await;
        tracing::info!(?pattern, removed, "invalidated");
        Ok(Response::new(InvalidatePatternResponse { removed }))
    }

    async fn get_stats(&self, _: Request<GetStatsRequest>) -> Result<Response<CacheStats>, Status> {
        Ok(Response::new(self.cache.snapshot().await))
    }

    async fn reset_stats(
        &self,
        _: Request<ResetStatsRequest>,
    ) -> Result<Response<ResetStatsResponse>, Status> {
        self.cache.stats().reset();
        Ok(Response::new(ResetStatsResponse {}))
    }

    async fn clear(&self, _: Request<ClearRequest>) -> Result<Response<ClearResponse>, Status> {
        self.cache.clear().await;
        tracing::info!("cleared");
        Ok(Response::new(ClearResponse {}))
    }
}

fn response(lookup: Lookup) -> GetResponse {
    match lookup {
        Lookup::Hit(value) => GetResponse {
            found: true,
            value,
            lease: 0,
        },
        Lookup::Miss { lease } => GetResponse {
            found: false,
            value: Vec::new(),
            lease,
        },
    }
}

/// A batch of keys (GetMany, Delete): bounded in size, each valid, errors naming `keys[i]`.
fn parse_keys(keys: Vec<String>) -> Result<Vec<Key>, Status> {
    check_batch(keys.len(), "keys")?;
    keys.into_iter()
        .enumerate()
        .map(|(i, key)| Key::parse(key, &format!("keys[{i}]")))
        .collect::<Result<Vec<_>, _>>()
        .map_err(Status::from)
}

fn check_batch(len: usize, field: &str) -> Result<(), Error> {
    if len > MAX_BATCH {
        return Err(Error::invalid(
            field,
            format!("has {len} items, at most {MAX_BATCH} allowed"),
        ));
    }
    Ok(())
}

/// `entries[3]` + `key` = `entries[3].key`; a top-level field is its own name.
fn join(parent: &str, field: &str) -> String {
    if parent.is_empty() {
        field.to_owned()
    } else {
        format!("{parent}.{field}")
    }
}
