//! Service and task logs on the wire. The Docker Engine's multiplexed stream (an 8-byte header:
//! the stream, three zero bytes, the payload's length in big-endian; then the payload), which
//! an agent also uses to send a task's log lines to a manager, each payload beginning with
//! the engine's timestamp; the line as the Docker API writes it for `service logs` (timestamp,
//! then the `com.docker.swarm.*` details the CLI turns into `name.slot.task@node`); and the
//! requests a manager hands an agent.

use serde::{Deserialize, Serialize};

/// The stream a frame belongs to.
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
/// The last frame of a command's output (`docker exec`), from an agent to a manager only: its
/// payload is the command's exit code (8 bytes, big-endian).
pub const EXIT: u8 = 3;

/// Length of a frame's header.
pub const HEADER: usize = 8;

/// The longest payload a frame may carry (the engine splits longer lines at 16 KiB).
pub const MAX_FRAME: usize = 1 << 20;

/// Appends one frame of `payload` on `stream` to `out`.
pub fn encode_frame(out: &mut Vec<u8>, stream: u8, payload: &[u8]) {
    out.push(stream);
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
}

/// Why a byte stream is no multiplexed log stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("log frame of stream {0}: only 1 (stdout), 2 (stderr) and 3 (an exit code) are sent")]
    Stream(u8),
    #[error("log frame of {0} bytes: the largest is {MAX_FRAME}")]
    TooLong(usize),
    #[error("an exit frame of {0} bytes: an exit code is 8")]
    Exit(usize),
    #[error("the log stream ended inside a frame")]
    Truncated,
}

/// Reads frames out of bytes that arrive in pieces of any size.
#[derive(Debug, Default)]
pub struct FrameReader {
    buffer: Vec<u8>,
    /// Where the next frame starts in `buffer` (what is before it was read).
    start: usize,
}

impl FrameReader {
    /// Adds bytes that arrived.
    pub fn push(&mut self, bytes: &[u8]) {
        // What was read goes once, not at each frame (many frames may come in one piece).
        self.buffer.drain(..self.start);
        self.start = 0;
        self.buffer.extend_from_slice(bytes);
    }

    /// The next whole frame, `(stream, payload)`, if one has arrived. An empty payload is a
    /// keep-alive of a quiet stream.
    pub fn next_frame(&mut self) -> Result<Option<(u8, Vec<u8>)>, FrameError> {
        let rest = &self.buffer[self.start..];
        if rest.len() < HEADER {
            return Ok(None);
        }
        let stream = rest[0];
        if stream != STDOUT && stream != STDERR && stream != EXIT {
            return Err(FrameError::Stream(stream));
        }
        let length = u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]) as usize;
        if stream == EXIT && length != 8 {
            return Err(FrameError::Exit(length));
        }
        if length > MAX_FRAME {
            return Err(FrameError::TooLong(length));
        }
        if rest.len() < HEADER + length {
            return Ok(None);
        }
        let payload = rest[HEADER..HEADER + length].to_vec();
        self.start += HEADER + length;
        Ok(Some((stream, payload)))
    }

    /// Checks that the stream ended between frames.
    pub fn finish(&self) -> Result<(), FrameError> {
        if self.start == self.buffer.len() { Ok(()) } else { Err(FrameError::Truncated) }
    }
}

/// Splits an engine log line read with timestamps into its timestamp and its message.
pub fn split_timestamp(payload: &[u8]) -> (&[u8], &[u8]) {
    match payload.iter().position(|b| *b == b' ') {
        Some(space) => (&payload[..space], &payload[space + 1..]),
        None => (&[], payload),
    }
}

/// Where a task's line comes from, as the Docker API names it in the details of a
/// `service logs` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogContext {
    pub node_id: String,
    pub service_id: String,
    pub task_id: String,
}

impl LogContext {
    /// The details (`key=value` sorted by key, URL-query escaped, comma-separated).
    pub fn details(&self) -> String {
        [
            ("com.docker.swarm.node.id", &self.node_id),
            ("com.docker.swarm.service.id", &self.service_id),
            ("com.docker.swarm.task.id", &self.task_id),
        ]
        .iter()
        .map(|(k, v)| format!("{}={}", query_escape(k), query_escape(v)))
        .collect::<Vec<_>>()
        .join(",")
    }
}

/// A `service logs` line as the engine's API writes it: `[timestamp ][details ]message`.
pub fn format_line(timestamp: &[u8], message: &[u8], context: &LogContext, timestamps: bool, details: bool) -> Vec<u8> {
    let mut line = Vec::with_capacity(timestamp.len() + message.len() + 128);
    if timestamps && !timestamp.is_empty() {
        line.extend_from_slice(timestamp);
        line.push(b' ');
    }
    if details {
        line.extend_from_slice(context.details().as_bytes());
        line.push(b' ');
    }
    line.extend_from_slice(message);
    line
}

/// Go's `url.QueryEscape`: unreserved bytes as they are, a space as `+`, the rest `%XX`.
fn query_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(byte as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// What the `follow`, `tail`, `since` and `until` of a `logs` call ask, parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogOptions {
    pub follow: bool,
    /// The last lines of each task (`None`: all).
    #[serde(default)]
    pub tail: Option<u64>,
    /// Lines from this Unix time on, in seconds (0: from the start).
    #[serde(default)]
    pub since: i64,
    /// Lines before this Unix time, in seconds (0: no end).
    #[serde(default)]
    pub until: i64,
}

/// Unix seconds as the CLI sends a time (`1764669600.123456789`; the fraction is dropped).
fn unix_seconds(name: &str, value: Option<&str>) -> Result<i64, String> {
    match value.map(str::trim) {
        None | Some("") => Ok(0),
        Some(s) => {
            let seconds = s.split_once('.').map_or(s, |(whole, _)| whole);
            seconds.parse::<i64>().map_err(|_| format!("invalid {name} {s:?}: Unix seconds"))
        }
    }
}

impl LogOptions {
    /// Reads `follow`, `tail` (`all` or a count), `since` and `until` (Unix seconds with an
    /// optional fraction, as the CLI sends them) of a `logs` call.
    pub fn parse(
        follow: Option<&str>,
        tail: Option<&str>,
        since: Option<&str>,
        until: Option<&str>,
    ) -> Result<LogOptions, String> {
        let follow = follow.is_some_and(|v| v == "1" || v == "true");
        let tail = match tail.map(str::trim) {
            None | Some("") | Some("all") => None,
            Some(n) => Some(n.parse::<i64>().map_err(|_| format!("invalid tail {n:?}: a count or \"all\""))?)
                .filter(|n| *n >= 0)
                .map(|n| n as u64),
        };
        Ok(LogOptions { follow, tail, since: unix_seconds("since", since)?, until: unix_seconds("until", until)? })
    }
}

/// A manager asking an agent for the lines of one task: the agent sends them, framed, in the
/// body of `POST /cluster/logs/{id}` to the manager that asked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRequest {
    pub id: String,
    pub task_id: String,
    pub options: LogOptions,
    /// Not the task's lines but this command's output, run in its container (`docker exec`),
    /// ending with an [`EXIT`] frame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecSpec>,
    /// Not the task's lines but its container's standard input (`docker run -i`): the node
    /// takes it from `GET /cluster/exec-input/{id}` and attaches it to the container, and
    /// sends an [`EXIT`] frame once it closed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub attach_stdin: bool,
    /// Not the task's lines but its container's output as the engine attaches to it (raw, a
    /// terminal's partial lines as they come), until it ends (`docker run`, `docker attach`);
    /// with `replay`, what it wrote before first.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub attach_output: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replay: bool,
}

/// A command to run in a task's container, as a caller's grants allowed it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecSpec {
    pub cmd: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub working_dir: String,
    #[serde(default)]
    pub tty: bool,
    #[serde(default)]
    pub privileged: bool,
    /// The caller sends standard input: the node takes it from
    /// `GET /cluster/exec-input/{request id}`.
    #[serde(default)]
    pub stdin: bool,
}

/// The payload of an [`EXIT`] frame.
pub fn exit_payload(code: i64) -> [u8; 8] {
    code.to_be_bytes()
}

/// The exit code an [`EXIT`] frame's payload carries.
pub fn exit_code(payload: &[u8]) -> Option<i64> {
    Some(i64::from_be_bytes(payload.try_into().ok()?))
}

/// An agent's long poll for log requests (`POST /cluster/log-requests`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LogRequestsPoll {
    pub wait_ms: u64,
}

/// The log requests waiting for the calling node (none when the poll timed out).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LogRequests {
    pub requests: Vec<LogRequest>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context() -> LogContext {
        LogContext { node_id: "2".into(), service_id: "svc".into(), task_id: "t 1".into() }
    }

    #[test]
    fn frames_are_read_back_whatever_pieces_the_bytes_arrive_in() {
        let mut bytes = Vec::new();
        encode_frame(&mut bytes, STDOUT, b"2026-12-02T10:00:00.000000000Z hello\n");
        encode_frame(&mut bytes, STDERR, b"");
        encode_frame(&mut bytes, STDERR, b"2026-12-02T10:00:01.000000000Z oops\n");
        for piece in [1, 3, 8, 9, 100] {
            let mut reader = FrameReader::default();
            let mut frames = Vec::new();
            for chunk in bytes.chunks(piece) {
                reader.push(chunk);
                while let Some(frame) = reader.next_frame().expect("a frame") {
                    frames.push(frame);
                }
            }
            reader.finish().expect("the end between frames");
            assert_eq!(frames.len(), 3, "pieces of {piece}");
            assert_eq!(frames[0].0, STDOUT);
            assert_eq!(frames[2], (STDERR, b"2026-12-02T10:00:01.000000000Z oops\n".to_vec()));
        }
    }

    #[test]
    fn a_bad_stream_a_huge_frame_and_a_cut_frame_are_refused() {
        let mut reader = FrameReader::default();
        reader.push(&[4, 0, 0, 0, 0, 0, 0, 1, b'x']);
        assert_eq!(reader.next_frame(), Err(FrameError::Stream(4)));
        let mut reader = FrameReader::default();
        reader.push(&[EXIT, 0, 0, 0, 0, 0, 0, 1, b'x']);
        assert_eq!(reader.next_frame(), Err(FrameError::Exit(1)));
        let mut reader = FrameReader::default();
        let mut exit = Vec::new();
        encode_frame(&mut exit, EXIT, &exit_payload(-3));
        reader.push(&exit);
        let (stream, payload) = reader.next_frame().expect("a frame").expect("whole");
        assert_eq!((stream, exit_code(&payload)), (EXIT, Some(-3)));
        let mut reader = FrameReader::default();
        reader.push(&[1, 0, 0, 0, 0x7f, 0, 0, 0]);
        assert!(matches!(reader.next_frame(), Err(FrameError::TooLong(_))));
        let mut reader = FrameReader::default();
        reader.push(&[1, 0, 0, 0, 0, 0, 0, 5, b'a']);
        assert_eq!(reader.next_frame(), Ok(None));
        assert_eq!(reader.finish(), Err(FrameError::Truncated));
    }

    #[test]
    fn lines_carry_the_details_the_cli_reads_sorted_and_escaped() {
        let (ts, message) = split_timestamp(b"2026-12-02T10:00:00.000000000Z hello world\n");
        assert_eq!(ts, b"2026-12-02T10:00:00.000000000Z");
        assert_eq!(message, b"hello world\n");
        let line = format_line(ts, message, &context(), true, true);
        assert_eq!(
            String::from_utf8(line).expect("text"),
            "2026-12-02T10:00:00.000000000Z com.docker.swarm.node.id=2,com.docker.swarm.service.id=svc,\
             com.docker.swarm.task.id=t+1 hello world\n"
        );
        assert_eq!(format_line(ts, message, &context(), false, false), b"hello world\n");
    }

    #[test]
    fn options_are_read_as_the_cli_sends_them() {
        let parsed =
            LogOptions::parse(Some("1"), Some("5"), Some("1764669600.123456789"), Some("1764669700")).expect("options");
        assert_eq!(parsed, LogOptions { follow: true, tail: Some(5), since: 1_764_669_600, until: 1_764_669_700 });
        assert_eq!(LogOptions::parse(None, Some("all"), Some(""), None).expect("options"), LogOptions::default());
        assert_eq!(LogOptions::parse(None, Some("-1"), None, None).expect("options").tail, None);
        assert!(LogOptions::parse(None, Some("ten"), None, None).is_err());
        assert!(LogOptions::parse(None, None, Some("yesterday"), None).is_err());
        assert!(LogOptions::parse(None, None, None, Some("soon")).is_err());
    }
}
