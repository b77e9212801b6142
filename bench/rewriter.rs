//! The SSE rewriter against a parse-and-reserialise baseline (`serde_json`), on the recorded
//! streams in event-sized reads and in one-byte reads, and on one 1 MB event in 1460-byte reads.
//! Run with `cargo bench --bench rewriter`; bench/README.md says how to read and record it.

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{criterion_group, Criterion, Throughput};
use persona_gateway::sse::Rewriter;
use serde_json::Value;

const PERSONA: &str = "zaguanai/socrates";
const OURS: &str = "rewriter";
const NAIVE: &str = "serde_json";
/// A TCP segment's worth of payload: how a large event arrives from an upstream.
const SEGMENT: usize = 1460;

/// Streams, each with the offsets where its reads end.
struct Workload {
    name: &'static str,
    streams: Vec<(Vec<u8>, Vec<usize>)>,
    events: usize,
}

impl Workload {
    fn bytes(&self) -> usize {
        self.streams.iter().map(|(stream, _)| stream.len()).sum()
    }
}

fn recorded_streams() -> Vec<Vec<u8>> {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases/sse");
    let mut paths: Vec<_> = std::fs::read_dir(folder)
        .map(|entries| entries.filter_map(Result::ok).map(|entry| entry.path()).collect())
        .unwrap_or_default();
    paths.retain(|path| path.extension().is_some_and(|extension| extension == "sse"));
    paths.sort();
    paths.iter().filter_map(|path| std::fs::read(path).ok()).collect()
}

/// Where each event of an LF-framed stream ends: just after its blank line.
fn event_ends(stream: &[u8]) -> Vec<usize> {
    let pairs = stream.windows(2).enumerate().filter(|(_, pair)| pair == b"\n\n");
    let mut ends: Vec<usize> = pairs.map(|(at, _)| at + 2).collect();
    if ends.last() != Some(&stream.len()) {
        ends.push(stream.len());
    }
    ends
}

fn fixed_ends(stream: &[u8], size: usize) -> Vec<usize> {
    (1..=stream.len().div_ceil(size)).map(|count| (count * size).min(stream.len())).collect()
}

/// One chat completion chunk whose content is about `size` bytes of text with escapes and
/// non-ASCII characters.
fn large_event(size: usize) -> Vec<u8> {
    let sentence = concat!(
        r#"The caf\u00e9 on \"Rue Oberkampf\" serves 12.5 \u20ac coffee "#,
        r"\u2014 \u4e2d\u6587 too, \u00e0 la carte.\n",
    );
    let content = sentence.repeat(size / sentence.len() + 1);
    format!(
        "data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\
         \"model\":\"up-model\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{content}\"}},\
         \"finish_reason\":null}}]}}\n\n"
    )
    .into_bytes()
}

fn workloads() -> Vec<Workload> {
    let recorded = recorded_streams();
    let events: usize = recorded.iter().map(|stream| event_ends(stream).len()).sum();
    let with = |ends: fn(&[u8]) -> Vec<usize>| {
        recorded.iter().map(|stream| (stream.clone(), ends(stream))).collect::<Vec<_>>()
    };
    let large = large_event(1 << 20);
    let large_ends = fixed_ends(&large, SEGMENT);
    vec![
        Workload { name: "recorded streams, event reads", streams: with(event_ends), events },
        Workload {
            name: "recorded streams, 1-byte reads",
            streams: with(|s| fixed_ends(s, 1)),
            events,
        },
        Workload {
            name: "1 MB event, 1460-byte reads",
            streams: vec![(large, large_ends)],
            events: 1,
        },
    ]
}

/// Feeds every stream through a fresh rewriter, handing each read's output on as a Worker
/// would (here: to `black_box`).
fn rewrite_all(workload: &Workload, out: &mut Vec<u8>) {
    for (stream, ends) in &workload.streams {
        let mut rewriter = Rewriter::new(PERSONA);
        let mut start = 0;
        for &end in ends {
            rewriter.push(&stream[start..end], out);
            black_box(&out);
            out.clear();
            start = end;
        }
        black_box(rewriter.finish(out));
        out.clear();
    }
}

/// What a gateway that decodes every event does: frame on blank lines (LF only, enough for
/// the recorded streams), parse each `data:` value into a `serde_json::Value`, set `model`,
/// serialise it again. It scans only new bytes for the blank line, as a fair framer would.
struct Naive {
    buffer: Vec<u8>,
    scanned: usize,
    persona: Value,
}

impl Naive {
    fn new(persona: &str) -> Self {
        Self { buffer: Vec::new(), scanned: 0, persona: Value::from(persona) }
    }

    fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        self.buffer.extend_from_slice(chunk);
        let mut start = 0;
        let mut from = self.scanned.saturating_sub(1);
        while let Some(at) = self.buffer[from..].windows(2).position(|pair| pair == b"\n\n") {
            let end = from + at + 2;
            reserialise(&self.buffer[start..end], &self.persona, out);
            start = end;
            from = end;
        }
        self.buffer.drain(..start);
        self.scanned = self.buffer.len();
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        if !self.buffer.is_empty() {
            reserialise(&self.buffer, &self.persona, out);
        }
    }
}

fn reserialise(event: &[u8], persona: &Value, out: &mut Vec<u8>) {
    for line in event.split(|&byte| byte == b'\n').filter(|line| !line.is_empty()) {
        let payload = line.strip_prefix(b"data: ").or_else(|| line.strip_prefix(b"data:"));
        match payload.map(serde_json::from_slice::<Value>) {
            Some(Ok(Value::Object(mut object))) => {
                if object.get("model").is_some_and(Value::is_string) {
                    object.insert("model".to_owned(), persona.clone());
                }
                out.extend_from_slice(b"data: ");
                out.extend(serde_json::to_vec(&object).unwrap_or_default());
            }
            _ => out.extend_from_slice(line),
        }
        out.push(b'\n');
    }
    out.push(b'\n');
}

fn reserialise_all(workload: &Workload, out: &mut Vec<u8>) {
    for (stream, ends) in &workload.streams {
        let mut naive = Naive::new(PERSONA);
        let mut start = 0;
        for &end in ends {
            naive.push(&stream[start..end], out);
            black_box(&out);
            out.clear();
            start = end;
        }
        naive.finish(out);
        black_box(&out);
        out.clear();
    }
}

fn bench_rewriter(criterion: &mut Criterion) {
    for workload in workloads() {
        let mut group = criterion.benchmark_group(workload.name);
        group.throughput(Throughput::BytesDecimal(workload.bytes() as u64));
        group.sample_size(15).warm_up_time(Duration::from_millis(700));
        group.measurement_time(Duration::from_secs(4));
        let mut out = Vec::new();
        group.bench_function(OURS, |bencher| {
            bencher.iter(|| rewrite_all(&workload, &mut out));
        });
        group.bench_function(NAIVE, |bencher| {
            bencher.iter(|| reserialise_all(&workload, &mut out));
        });
        group.finish();
    }
}

criterion_group!(benches, bench_rewriter);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    // `cargo bench` passes `--bench`; `cargo test --benches` runs each routine once, unmeasured.
    if std::env::args().any(|arg| arg == "--bench") {
        let table = table(&workloads());
        println!("{table}");
        if let Some(path) = std::env::var_os("REWRITER_BENCH_REPORT") {
            if let Err(error) = std::fs::write(&path, report(&table)) {
                eprintln!("cannot write {}: {error}", Path::new(&path).display());
            }
        }
    }
}

/// The table with what it was measured on: date, processor, cores, compiler.
fn report(table: &str) -> String {
    let command = |program: &str, argument: &str| {
        let output = std::process::Command::new(program).arg(argument).output();
        output.map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    };
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo.lines().find_map(|line| line.strip_prefix("model name")?.split_once(':'));
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    // The bench profile inherits release unless the environment overrides its opt-level.
    let level = std::env::var("CARGO_PROFILE_BENCH_OPT_LEVEL").unwrap_or_else(|_| "z".into());
    format!(
        "# Rewriter benchmark, {}\n\n- CPU: {} ({cores} cores)\n- Compiler: {}\n- Profile: bench, \
         opt-level \"{level}\", LTO, one codegen unit\n\n{table}\n",
        command("date", "+%F").unwrap_or_default(),
        model.map_or("unknown", |(_, name)| name.trim()),
        command("rustc", "--version").unwrap_or_default(),
    )
}

/// The time of one iteration, in nanoseconds, from criterion's saved estimates.
fn mean_nanoseconds(group: &str, function: &str) -> Option<f64> {
    // Where criterion writes: $CRITERION_HOME, else the target folder's `criterion`.
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"), Into::into);
    let home =
        std::env::var_os("CRITERION_HOME").map_or_else(|| target.join("criterion"), Into::into);
    // Criterion names a group's folder after the group; these names need no escaping.
    let path = home.join(group).join(function).join("new/estimates.json");
    let estimates: Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    // The figure criterion prints: the slope of its linear fit where it has one, else the mean.
    let slope = estimates.pointer("/slope/point_estimate").and_then(Value::as_f64);
    slope.or_else(|| estimates.pointer("/mean/point_estimate")?.as_f64())
}

/// Counts here stay far below 2^32, where an `f64` is exact.
fn as_f64(count: usize) -> f64 {
    f64::from(u32::try_from(count).unwrap_or(u32::MAX))
}

/// A markdown table of throughput and time per event, ours beside the baseline.
fn table(workloads: &[Workload]) -> String {
    let mut rows = vec![
        "| input | bytes | events | rewriter MB/s | serde_json MB/s | rewriter ns/event \
         | serde_json ns/event | serde_json time / rewriter time |"
            .to_owned(),
        "|---|---:|---:|---:|---:|---:|---:|---:|".to_owned(),
    ];
    for workload in workloads {
        let (Some(ours), Some(naive)) =
            (mean_nanoseconds(workload.name, OURS), mean_nanoseconds(workload.name, NAIVE))
        else {
            continue;
        };
        let bytes = as_f64(workload.bytes());
        let events = as_f64(workload.events);
        rows.push(format!(
            "| {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.1}x |",
            workload.name,
            workload.bytes(),
            workload.events,
            bytes / ours * 1e3,
            bytes / naive * 1e3,
            ours / events,
            naive / events,
            naive / ours,
        ));
    }
    rows.join("\n")
}
