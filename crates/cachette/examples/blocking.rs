//! The blocking API from a plain `fn main`, against Redis: no runtime to
//! build, no `.await`.
//!
//! ```sh
//! cargo run -p cachette --features blocking,redis --example blocking            # redis://127.0.0.1:6379
//! cargo run -p cachette --features blocking,redis --example blocking -- redis://127.0.0.1:6380/1
//! ```

use std::time::Duration;

use bytes::Bytes;
use cachette::blocking;
use cachette::{EntryOptions, SetOptions};

fn main() -> cachette::Result<()> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned());

    // A handle to the backend, and the typed cache over it on the same
    // runtime: values through the default codec, tags, versions. A
    // namespace of its own, so that the version bump below leaves the keys
    // of other programs on this server alone.
    let backend = blocking::open(&url)?;
    let cache = backend
        .cache_builder()
        .namespace("example-blocking")
        .build()?;
    let options = EntryOptions::new()
        .ttl(Duration::from_secs(60))
        .tags(["example:blocking"]);
    let greeting: Option<String> = cache.get_or_load(
        "greeting",
        |ctx| {
            println!("loading {} (a slow query would run here)", ctx.key());
            Ok::<_, std::io::Error>(Some("hello from a plain fn main".to_owned()))
        },
        &options,
    )?;
    println!("greeting: {greeting:?}");

    // Threads share the cache through cheap clones (and share its loads:
    // concurrent get_or_load calls of one key run its loader once).
    let handles: Vec<_> = (0..4)
        .map(|n| {
            let cache = cache.clone();
            std::thread::spawn(move || cache.get::<String>("greeting").map(|v| (n, v)))
        })
        .collect();
    for handle in handles {
        if let Ok(answer) = handle.join() {
            println!("thread {:?}", answer?);
        }
    }

    let removed = cache.invalidate_tags(&["example:blocking"])?;
    println!("invalidated example:blocking ({removed} entries reported)");
    println!("key version now {}", cache.bump_version()?);
    println!("stats: {:?}", cache.stats());

    // Raw bytes through the handle to the backend itself.
    backend.set(
        "example:raw",
        Bytes::from_static(b"raw bytes"),
        &SetOptions::new().ttl(Duration::from_secs(60)),
    )?;
    println!("raw: {:?}", backend.get("example:raw")?);
    backend.delete("example:raw")?;
    Ok(())
}
