//! The `sluice` command line: the binary edge, where errors become messages and exit codes.

use std::net::SocketAddr;
use std::num::NonZeroU64;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sluice::config::{Config, LogFormat, Role};
use sluice::model::TableId;
use sluice::positions::PositionStore;
use sluice::registry::Users;
use sluice::tools::verify::{Difference, VerifyOptions};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// mimalloc: every decoded row allocates its values, and glibc's malloc was a quarter of
/// decode time in the decoder bench (docs/benchmarks.md). Without transparent huge pages
/// (`no_thp`, and [`no_huge_pages`] where the host gives them unasked): with them each
/// thread's first pages cost 2 MiB of resident memory, and the process held 110 MB instead of
/// 45 MB.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Change data capture: MySQL/MariaDB binlog -> Avro -> Kafka -> Elasticsearch.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Snapshot and stream the configured tables (SIGINT/SIGTERM drain and exit 0).
    Run {
        /// TOML config file; see sluice.example.toml.
        #[arg(long, short)]
        config: PathBuf,
        /// Which half of the pipeline to run in this process.
        #[arg(long, value_enum, default_value = "all")]
        role: Role,
    },
    /// Create the signal table in the source database (`source.signal_table`), which
    /// incremental snapshots need; runs as the configured user, which then needs CREATE on
    /// its database (or apply migrations/003_sluice_signal.sql as an administrator).
    Setup {
        /// TOML config file of the source.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Request an incremental snapshot of a captured table while `sluice run` streams: writes
    /// an execute-snapshot row to the signal table, which the running source picks up from
    /// the binlog.
    Snapshot {
        /// TOML config file of the source.
        #[arg(long, short)]
        config: PathBuf,
        /// The table, `db.table`.
        #[arg(long)]
        table: String,
        /// Only rows matching this SQL condition (e.g. "updated_at > '2026-01-01'").
        #[arg(long = "where")]
        filter: Option<String>,
    },
    /// One screen on a pipeline: position, per table snapshot state and rates, lag. Asks the
    /// running process over its metrics endpoint, else reads the state directory.
    Status {
        /// TOML config file of the pipeline.
        #[arg(long, short)]
        config: PathBuf,
        /// Print JSON, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Compare each captured table with its index while streaming goes on, chunk by chunk in
    /// key order, and list missing, extra and different documents. Exit 0 = equal,
    /// 1 = differences, 2 = could not check (or some rows kept changing). An interrupted run
    /// continues where it stopped.
    Verify {
        /// TOML config file with `[source]` and `[elasticsearch]` (the pipeline's own).
        #[arg(long, short)]
        config: PathBuf,
        /// Only this table, `db.table`.
        #[arg(long)]
        table: Option<String>,
        /// Only rows matching this SQL condition (documents without rows are then not
        /// looked for).
        #[arg(long = "where")]
        filter: Option<String>,
        /// Re-read differing rows through the pipeline (incremental-snapshot windows: needs
        /// the signal table and a running source) and delete documents without rows.
        #[arg(long)]
        repair: bool,
        /// Read at most this many rows per second (0 = unpaced).
        #[arg(long, default_value_t = 0)]
        max_rows_per_sec: u64,
        /// Rows compared per chunk (documents fetched per request).
        #[arg(long, default_value_t = 1000)]
        chunk_rows: u64,
        /// Seconds to wait for the pipeline to pass a differing row before it counts as
        /// unsettled.
        #[arg(long, default_value_t = 120)]
        patience_secs: u64,
        /// Print JSON, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Print a table's schema history: every shape the source saw in the binlog, with the
    /// position of the first change that had it (stop `sluice run` first: sled locks it).
    Schemas {
        /// TOML config file of the source whose state to read.
        #[arg(long, short)]
        config: PathBuf,
        /// The table, `db.table`.
        table: String,
    },
    /// Serve a Confluent-compatible schema registry. With SLUICE_REGISTRY_USERS set
    /// (`user:password[,...]`) every request needs one of those basic-auth credentials.
    Registry {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8081")]
        listen: SocketAddr,
        /// Data directory (a sled database).
        #[arg(long)]
        data: PathBuf,
    },
}

/// Environment variable holding `sluice registry`'s basic-auth users.
const REGISTRY_USERS: &str = "SLUICE_REGISTRY_USERS";

/// Turns transparent huge pages off for this process: a host whose setting is `always` backs
/// the allocator's arena with them even though it does not ask (most distributions default to
/// `madvise`, where not asking is enough).
fn no_huge_pages() {
    // SAFETY: PR_SET_THP_DISABLE takes integers only and changes nothing but this flag of
    // the process; a kernel without it returns an error, which changes nothing either.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

/// mysql_async's environment variable bounding the packet buffers it keeps for reuse.
const MYSQL_BUFFER_CAP: &str = "MYSQL_ASYNC_BUFFER_SIZE_CAP";

/// mysql_async keeps up to 128 freed packet buffers for reuse, each up to 4 MiB, and a table of
/// rows near a megabyte left a hundred megabytes in them (docs/benchmarks.md, "Rows up to 1 MB").
/// Buffers larger than 64 KiB are shrunk when returned instead, unless the environment sets
/// the bound: rows of a few kilobytes and binlog events (8 KiB by default) never reach it.
fn bound_mysql_buffers() {
    if std::env::var_os(MYSQL_BUFFER_CAP).is_none() {
        // SAFETY: called first thing in main, before any other thread exists.
        unsafe { std::env::set_var(MYSQL_BUFFER_CAP, "65536") };
    }
}

fn main() -> ExitCode {
    no_huge_pages();
    bound_mysql_buffers();
    let cli = Cli::parse();
    let format = match &cli.command {
        Command::Run { config, .. }
        | Command::Setup { config }
        | Command::Snapshot { config, .. }
        | Command::Schemas { config, .. }
        | Command::Status { config, .. }
        | Command::Verify { config, .. } => LogFormat::of_file(config),
        Command::Registry { .. } => LogFormat::Text,
    };
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,librdkafka=warn,rdkafka=warn".into()),
        )
        .with_writer(sluice::source::progress::log_writer);
    match format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {}", sluice::with_causes(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

/// Runs the command; the exit code it asks for.
async fn run(cli: Cli) -> anyhow::Result<u8> {
    let shutdown = CancellationToken::new();
    watch_signals(shutdown.clone())?;
    match cli.command {
        Command::Run { config, role } => {
            let cfg = Config::load(&config, role)?;
            let tables: Vec<String> = cfg.tables.iter().map(ToString::to_string).collect();
            tracing::info!(config = %config.display(), ?role, ?tables, "starting");
            sluice::pipeline::run(cfg, shutdown).await?;
            tracing::info!("stopped cleanly");
        }
        Command::Setup { config } => {
            let src = Config::load_source(&config)?;
            let signal = sluice::source::incremental::setup(&src).await?;
            println!("signal table {signal} is ready; the Sluice user needs INSERT, UPDATE on it");
        }
        Command::Snapshot {
            config,
            table,
            filter,
        } => {
            let src = Config::load_source(&config)?;
            let id = TableId::parse(&table)
                .with_context(|| format!("{table:?} is not a table name of the form db.table"))?;
            let signal = sluice::source::incremental::request(&src, &id, filter.as_deref()).await?;
            println!(
                "requested an incremental snapshot of {id} (signal {signal}); the running source \
                 logs its progress"
            );
        }
        Command::Schemas { config, table } => {
            let src = Config::load_source(&config)?;
            let id = TableId::parse(&table)
                .with_context(|| format!("{table:?} is not a table name of the form db.table"))?;
            let dir = &src.state_dir;
            let history = PositionStore::open(dir)?.schema_history(&id)?;
            if history.is_empty() {
                println!("no schema of {id} recorded in {}", dir.display());
            }
            for (position, schema) in history {
                println!("{position}\t{schema}");
            }
        }
        Command::Status { config, json } => {
            let cfg = [Role::All, Role::Source, Role::Loader]
                .into_iter()
                .find_map(|role| Config::load(&config, role).ok());
            let cfg = match cfg {
                Some(cfg) => cfg,
                None => Config::load(&config, Role::All)?,
            };
            let status = sluice::tools::status::status(&cfg).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{}", status.text());
            }
        }
        Command::Verify {
            config,
            table,
            filter,
            repair,
            max_rows_per_sec,
            chunk_rows,
            patience_secs,
            json,
        } => {
            // Every failure to check exits 2, a wrong argument too (1 means differences).
            let table = match table.map(|t| TableId::parse(&t).ok_or(t)).transpose() {
                Ok(table) => table,
                Err(t) => {
                    eprintln!("error: {t:?} is not a table name of the form db.table");
                    return Ok(2);
                }
            };
            let options = VerifyOptions {
                table,
                filter,
                repair,
                max_rows_per_sec: NonZeroU64::new(max_rows_per_sec),
                chunk_rows: chunk_rows.max(1),
                patience: Duration::from_secs(patience_secs),
                ..VerifyOptions::default()
            };
            return Ok(verify(&config, &options, json, &shutdown).await);
        }
        Command::Registry { listen, data } => {
            // Credentials come from the environment, never the command line (`ps` shows it).
            let users = match std::env::var(REGISTRY_USERS) {
                Ok(text) => Users::parse(&text).with_context(|| {
                    format!("{REGISTRY_USERS} must be user:password[,user:password...]")
                })?,
                Err(_) => Users::default(),
            };
            sluice::registry::serve(listen, &data, users, shutdown).await?;
        }
    }
    Ok(0)
}

/// `sluice verify`: differences printed as they are confirmed, then a summary line per
/// table (or one JSON report); any failure to check exits 2.
async fn verify(
    config: &std::path::Path,
    options: &VerifyOptions,
    json: bool,
    shutdown: &CancellationToken,
) -> u8 {
    let cfg = match Config::load(config, Role::All) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("error: {}", sluice::with_causes(&e));
            return 2;
        }
    };
    let mut print = |table: &TableId, d: &Difference| {
        if !json {
            let columns = if d.columns.is_empty() {
                String::new()
            } else {
                format!("\tcolumns: {}", d.columns.join(", "))
            };
            println!("{}\t{table}\tid={}{columns}", d.kind, d.id);
        }
    };
    match sluice::tools::verify::verify(&cfg, options, shutdown, &mut print).await {
        Ok(Some(report)) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).expect("the report serializes")
                );
            } else {
                for t in &report.tables {
                    println!("{}", t.summary());
                }
            }
            report.exit_code() as u8
        }
        Ok(None) => {
            eprintln!("interrupted: run the same command again to continue where it stopped");
            2
        }
        Err(e) => {
            eprintln!("error: {}", sluice::with_causes(&e));
            2
        }
    }
}

/// The first SIGINT/SIGTERM asks for a drain; a second one exits at once.
fn watch_signals(shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    tokio::spawn(async move {
        for n in 0.. {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            if n > 0 {
                eprintln!("second signal: exiting without draining");
                std::process::exit(130);
            }
            tracing::info!("signal received: draining (send it again to exit at once)");
            shutdown.cancel();
        }
    });
    Ok(())
}
