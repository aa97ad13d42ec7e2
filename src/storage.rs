//! sled, as every durable store of Sluice opens and flushes it (the position store and the
//! schema registry's).

use std::path::Path;

/// Opens a sled database without its background flusher: every writer here flushes when
/// what it wrote must be durable. sled's I/O threads can still hold a just-dropped database's
/// lock for a moment, so a reopen in the same process (a restarted component, a test) waits
/// up to two seconds for it; another process holding the lock is reported after that.
pub fn open_sled(dir: &Path) -> sled::Result<sled::Db> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        match sled::Config::new().path(dir).flush_every_ms(None).open() {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

/// Makes everything written to `db` durable. sled 0.34's `flush_async` can leave callers that
/// flush at the same time waiting forever (a known sled bug, seen here as a hung
/// registry test), so its blocking flush runs on the blocking pool instead.
pub async fn flush(db: &sled::Db) -> sled::Result<usize> {
    let db = db.clone();
    tokio::task::spawn_blocking(move || db.flush())
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}
