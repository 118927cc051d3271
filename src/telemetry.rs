//! Logging: JSON for machines, pretty on a terminal; level from `RUST_LOG`.

use std::io::IsTerminal;

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::{EnvFilter, filter::LevelFilter, fmt, fmt::MakeWriter};

use crate::config::LogFormat;

/// Crates that handle raw requests (HTTP/2 frames, connection bytes) or SQL
/// (statements, and with some features their bound values, e.g. password
/// hashes). A global `debug`/`trace` in `RUST_LOG` leaves them at `info`: at
/// those levels they log floods of transport detail, and a version that logs
/// a header or a bound value would put tokens or hashes in the logs. Naming
/// one in `RUST_LOG` (e.g. `trace,h2=trace`) lifts its cap.
const CAPPED_TARGETS: &[&str] = &["h2", "hyper", "hyper_util", "sqlx", "sea_orm", "tower"];

/// The `RUST_LOG` directives, plus an `info` cap for each unnamed target of
/// `CAPPED_TARGETS` when the global level is more verbose than `info`.
fn filter_directives(spec: &str) -> String {
    let directives: Vec<&str> = spec
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .collect();
    let global = directives
        .iter()
        .filter(|d| !d.contains('=') && !d.contains('['))
        .filter_map(|d| d.parse::<LevelFilter>().ok())
        .next_back()
        .unwrap_or(LevelFilter::ERROR);
    let mut out = directives.join(",");
    if global <= LevelFilter::INFO {
        return out;
    }
    for target in CAPPED_TARGETS {
        // A directive for a module of the crate is more specific than the
        // cap and wins over it anyway.
        let named = directives
            .iter()
            .any(|d| d.split(['=', '[']).next() == Some(*target));
        if !named {
            out.push_str(&format!(",{target}=info"));
        }
    }
    out
}

/// Logs written to stderr by the calling thread (the CLI commands).
pub fn init(format: Option<LogFormat>) {
    init_with(format, std::io::stderr);
}

/// Logs handed to a logging thread that writes them to stderr, so a request
/// never waits on stderr's lock or a slow pipe: with the access log on, a
/// synchronous write per request cost verify 13-37 % of its throughput
/// (BENCHMARKS.md). Not lossy: past `LOG_QUEUE_LINES` queued lines a
/// request waits rather than a line being dropped. The guard writes what is
/// queued when dropped: hold it until the server has drained.
pub fn init_server(format: Option<LogFormat>) -> WorkerGuard {
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(LOG_QUEUE_LINES)
        .thread_name("tessera-log")
        .finish(std::io::stderr());
    init_with(format, writer);
    guard
}

/// The queue is allocated and touched in full at start: the default 128k
/// lines were 4 MiB resident. 8k lines are seconds of access log at full
/// load, and the logging thread drains them far faster.
const LOG_QUEUE_LINES: usize = 8192;

fn init_with<W>(format: Option<LogFormat>, writer: W)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|spec| EnvFilter::try_new(filter_directives(&spec)).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let format = format.unwrap_or(if std::io::stdout().is_terminal() {
        LogFormat::Pretty
    } else {
        LogFormat::Json
    });
    let builder = fmt().with_env_filter(filter).with_writer(writer);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbose_levels_cap_transport_and_sql_crates() {
        assert_eq!(filter_directives("info"), "info");
        assert_eq!(
            filter_directives("warn,tessera=debug"),
            "warn,tessera=debug"
        );
        assert_eq!(
            filter_directives("trace"),
            "trace,h2=info,hyper=info,hyper_util=info,sqlx=info,sea_orm=info,tower=info"
        );
        assert_eq!(
            filter_directives("debug, h2=trace,sqlx::query=debug"),
            "debug,h2=trace,sqlx::query=debug,hyper=info,hyper_util=info,sqlx=info,sea_orm=info,tower=info"
        );
        assert!(EnvFilter::try_new(filter_directives("trace,hyper")).is_ok());
    }
}
