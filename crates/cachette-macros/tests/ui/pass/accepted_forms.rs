//! Every form the attribute accepts compiles.
use std::sync::Arc;

use cachette::cache::Cache;
use cachette::cached;
use tokio::sync::OnceCell;

static CELL: OnceCell<Cache> = OnceCell::const_new();

async fn cache() -> cachette::Result<&'static Cache> {
    CELL.get_or_try_init(|| Cache::builder(Arc::new(cachette::MemoryBackend::default())).build())
        .await
}

#[derive(Clone)]
struct Pool;

#[cached(cache = cache().await?, ttl = "1m", soft_ttl = "10s", fail_safe = "1h", jitter = "5s", key = "a:{id}")]
async fn result(id: u64, name: &str, pool: &Pool, mut n: u32) -> Result<String, cachette::Error> {
    n += 1;
    let _ = pool;
    Ok(format!("{id}{name}{n}"))
}

#[cached(cache = cache().await?, negative_ttl = "5s", tags = ["t:{id}", "all"])]
async fn result_option(id: u64, bytes: &[u8], pair: (u8, String)) -> cachette::Result<Option<u64>> {
    Ok(Some(id + bytes.len() as u64 + u64::from(pair.0)))
}

#[cached(cache = cache().await.unwrap())]
async fn option(id: Option<u32>, ids: Vec<i64>) -> Option<u32> {
    let _ = ids;
    id
}

#[cached(cache = cache().await.unwrap(), key = "{name:?}{{}}")]
async fn plain(name: String) -> Vec<String> {
    vec![name]
}

struct Repository;

impl Repository {
    fn prefix() -> &'static str {
        "repository"
    }

    // An associated function (no `self`) may use `Self`; it needs a `key`.
    #[cached(cache = cache().await?, key = "repository:{id}")]
    async fn find(id: u64) -> cachette::Result<String> {
        Ok(format!("{}{id}", Self::prefix()))
    }
}

#[cached(cache = cache().await?, key = "generic:{value}")]
async fn generic<T: std::fmt::Display + Send + 'static>(value: T) -> cachette::Result<String> {
    Ok(value.to_string())
}

// Where a dependency renamed cachette, `crate` names it; with the default
// key, every path the expansion writes goes through it.
mod renamed {
    pub(crate) use ::cachette as cache_lib;
}

#[cached(cache = cache().await?, crate = "renamed::cache_lib")]
async fn through_a_renamed_crate(id: u64, name: &str) -> cachette::Result<Option<String>> {
    Ok(Some(format!("{name}{id}")))
}

fn main() {}
