//! `edge-stub`: the upstream the edge benchmark measures against. It serves OpenAI-style chat
//! completions on 127.0.0.1, one thread per connection, as fast as the machine allows, and a
//! stream with the chunk count and delay the request's `x_bench` field asks for.
//!
//!   edge-stub [--port N] [--max-seconds S]   prints `listening <port>`, exits after S seconds

mod ask;
mod http;
mod replies;

use std::io::{self, BufReader, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::thread;
use std::time::Duration;

use ask::Ask;

/// Small stacks: the benchmark holds a thousand streams, each on its own thread.
const STACK_BYTES: usize = 256 * 1024;

/// How long the stub lives unless told, so that a harness that died cannot leave it running.
const DEFAULT_MAX_SECONDS: u64 = 900;

fn main() -> ExitCode {
    let (port, max_seconds) = match parse_arguments(std::env::args().skip(1)) {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("edge-stub: {message}");
            return ExitCode::from(2);
        }
    };
    let listener = match TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("edge-stub: cannot listen on 127.0.0.1:{port}: {error}");
            return ExitCode::FAILURE;
        }
    };
    let port = listener.local_addr().map_or(port, |a| a.port());
    println!("listening {port}");
    let _ = io::stdout().flush();

    thread::spawn(move || {
        thread::sleep(Duration::from_secs(max_seconds));
        eprintln!("edge-stub: {max_seconds} s are up, exiting");
        std::process::exit(0);
    });
    for connection in listener.incoming() {
        let Ok(connection) = connection else {
            continue;
        };
        let spawned =
            thread::Builder::new().stack_size(STACK_BYTES).spawn(move || serve(connection));
        if let Err(error) = spawned {
            eprintln!("edge-stub: cannot start a thread: {error}");
        }
    }
    ExitCode::SUCCESS
}

fn parse_arguments(mut args: impl Iterator<Item = String>) -> Result<(u16, u64), String> {
    let mut port = 0;
    let mut max_seconds = DEFAULT_MAX_SECONDS;
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--port" => port = value.parse().map_err(|_| format!("bad port {value}"))?,
            "--max-seconds" => {
                max_seconds = value.parse().map_err(|_| format!("bad seconds {value}"))?;
            }
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok((port, max_seconds))
}

/// Answers the requests of one connection until the client closes it. Errors end the
/// connection only; they are the client's business (a benchmark that stopped reading).
fn serve(connection: TcpStream) {
    let _ = connection.set_nodelay(true);
    let Ok(reading) = connection.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(reading);
    let mut writer = connection;
    while let Ok(Some(request)) = http::read_request(&mut reader) {
        let keep_alive = request.keep_alive;
        if answer(&request, &mut writer).is_err() || !keep_alive {
            return;
        }
    }
}

fn answer(request: &http::Request, out: &mut TcpStream) -> io::Result<()> {
    let keep_alive = request.keep_alive;
    match (request.method.as_str(), request.path.as_str()) {
        ("GET" | "HEAD", "/health") => {
            http::write_whole(out, "200 OK", "text/plain", b"ok", keep_alive)
        }
        ("POST", "/v1/chat/completions") => {
            let ask = Ask::parse_body(&request.body);
            if ask.stream {
                stream(&ask, out, keep_alive)
            } else {
                let body = replies::completion(ask.model.as_deref());
                http::write_whole(out, "200 OK", "application/json", body.as_bytes(), keep_alive)
            }
        }
        _ => http::write_whole(out, "404 Not Found", "text/plain", b"not found", keep_alive),
    }
}

/// The head at once, then each chunk event in its own write with the delay between chunks;
/// the usage chunk and `[DONE]` follow the last chunk without a delay.
fn stream(ask: &Ask, out: &mut TcpStream, keep_alive: bool) -> io::Result<()> {
    http::write_stream_head(out, keep_alive)?;
    let events = replies::events(ask.model.as_deref(), ask.chunks, ask.include_usage);
    let delay = Duration::from_millis(ask.delay_ms);
    for (index, event) in events.iter().enumerate() {
        if index > 0 && index < ask.chunks as usize && !delay.is_zero() {
            thread::sleep(delay);
        }
        http::write_chunk(out, event.as_bytes())?;
    }
    http::write_chunk(out, b"")
}
