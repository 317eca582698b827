//! Appends batches to a log with `flush = always` until killed, printing one line per
//! acknowledged batch (see `brook_tests::ack_line`). Usage: `log-appender DIR ROUND`.

use std::io::Write;

use anyhow::Context;
use brook_broker::log::Log;
use brook_proto::{BatchBuilder, LeaderEpoch};

const WRITERS: usize = 4;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().context("usage: log-appender DIR ROUND")?;
    let round: u32 = args
        .next()
        .context("usage: log-appender DIR ROUND")?
        .parse()?;
    let log = Log::open(&dir, brook_tests::crash_test_config()).await?;
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0u64.. {
                let tag = format!("r{round}-w{w}-{i}");
                let records = 1 + (i % 8) as usize;
                let mut b = BatchBuilder::new();
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64);
                for r in 0..records {
                    let value = format!("{tag}:{r}:{}", "v".repeat(100));
                    b.append(now, Some(tag.as_bytes()), Some(value.as_bytes()), &[]);
                }
                let info = log.append(b.build(), LeaderEpoch(round as i32)).await?;
                let line = brook_tests::ack_line(info.base_offset.0, info.last_offset.0, &tag);
                let mut out = std::io::stdout().lock();
                out.write_all(line.as_bytes())?;
                out.flush()?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}
