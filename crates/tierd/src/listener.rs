//! Serving local clients without letting one of them stall the others: the one listener
//! loop behind the control socket ([`crate::control`]) and the metrics endpoint
//! ([`crate::metrics`]).
//!
//! Each accepted connection gets its own thread, up to [`Limits::max_clients`] at once; a
//! connection beyond that is answered at once by the caller's `busy` function and closed,
//! so it is refused now rather than served (or, for a change, applied) later. Each client
//! has one deadline for its whole exchange ([`Limits::deadline`]), not a timeout per read:
//! a client sending a byte a second is cut off when its time is up, and every read and
//! write waits at most for what is left of it. A request is read with a size limit
//! ([`Limits::max_request`]): a 1 GiB request line is refused after its first
//! `max_request` bytes, not buffered.
//!
//! This is small enough to keep here: an HTTP crate such as `tiny_http` spawns a thread per
//! connection without a bound or a deadline on reading the request, which is the problem
//! this module exists to solve, and the control socket is not HTTP.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Bounds on what one client may take.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Clients served at once; more are answered "busy" and closed.
    pub max_clients: usize,
    /// The whole exchange (request and answer) must fit in this.
    pub deadline: Duration,
    /// The longest request, bytes.
    pub max_request: usize,
}

/// A stream a [`Client`] can put deadlines on.
pub trait Stream: Read + Write + Send + 'static {
    /// `set_read_timeout`.
    fn read_timeout(&self, t: Option<Duration>) -> io::Result<()>;
    /// `set_write_timeout`.
    fn write_timeout(&self, t: Option<Duration>) -> io::Result<()>;
    /// `set_nonblocking`.
    fn nonblocking(&self, on: bool) -> io::Result<()>;
}

macro_rules! stream_impl {
    ($t:ty) => {
        impl Stream for $t {
            fn read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
                self.set_read_timeout(t)
            }
            fn write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
                self.set_write_timeout(t)
            }
            fn nonblocking(&self, on: bool) -> io::Result<()> {
                self.set_nonblocking(on)
            }
        }
    };
}
stream_impl!(UnixStream);
stream_impl!(TcpStream);

/// A listening socket.
pub trait Accept: Send + 'static {
    /// Its connections.
    type Conn: Stream;
    /// `accept`, non-blocking.
    fn accept_one(&self) -> io::Result<Self::Conn>;
    /// `set_nonblocking`.
    fn listen_nonblocking(&self) -> io::Result<()>;
}

impl Accept for UnixListener {
    type Conn = UnixStream;
    fn accept_one(&self) -> io::Result<UnixStream> {
        self.accept().map(|(s, _)| s)
    }
    fn listen_nonblocking(&self) -> io::Result<()> {
        self.set_nonblocking(true)
    }
}

impl Accept for TcpListener {
    type Conn = TcpStream;
    fn accept_one(&self) -> io::Result<TcpStream> {
        self.accept().map(|(s, _)| s)
    }
    fn listen_nonblocking(&self) -> io::Result<()> {
        self.set_nonblocking(true)
    }
}

/// Why a request could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The deadline passed first.
    #[error("no complete request within {0:?}")]
    TimedOut(Duration),
    /// Longer than the limit.
    #[error("request longer than {0} bytes")]
    TooLarge(usize),
    /// The peer closed before the end of its request.
    #[error("connection closed before the end of the request")]
    Closed,
    /// Another I/O error.
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// One connection with its deadline.
#[derive(Debug)]
pub struct Client<S> {
    stream: S,
    started: Instant,
    limits: Limits,
    buf: Vec<u8>,
}

impl<S: Stream> Client<S> {
    fn new(stream: S, limits: Limits) -> io::Result<Client<S>> {
        stream.nonblocking(false)?;
        Ok(Client { stream, started: Instant::now(), limits, buf: Vec::new() })
    }

    /// The connection.
    pub fn stream(&self) -> &S {
        &self.stream
    }

    /// Time left before the deadline (zero when it has passed).
    pub fn remaining(&self) -> Duration {
        self.limits.deadline.saturating_sub(self.started.elapsed())
    }

    /// Whether the deadline has passed: a change must not start after it, since the
    /// client may have given up and reported a failure.
    pub fn expired(&self) -> bool {
        self.remaining().is_zero()
    }

    /// Reads up to and including the first `delim`, at most [`Limits::max_request`] bytes in
    /// all, before the deadline. Returns the bytes without `delim`.
    pub fn read_until(&mut self, delim: &[u8]) -> Result<Vec<u8>, ClientError> {
        let max = self.limits.max_request;
        let mut chunk = vec![0u8; 1 << 16];
        // Bytes already searched for `delim`: each byte is looked at once.
        let mut searched = 0usize;
        loop {
            let from = searched.saturating_sub(delim.len().saturating_sub(1));
            let found = self.buf[from..].windows(delim.len()).position(|w| w == delim);
            searched = self.buf.len();
            if let Some(at) = found.map(|i| from + i) {
                let rest = self.buf.split_off(at + delim.len());
                let mut line = std::mem::replace(&mut self.buf, rest);
                line.truncate(at);
                return Ok(line);
            }
            if self.buf.len() > max {
                return Err(ClientError::TooLarge(max));
            }
            let left = self.remaining();
            if left.is_zero() {
                return Err(ClientError::TimedOut(self.limits.deadline));
            }
            self.stream.read_timeout(Some(left))?;
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(ClientError::Closed),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) =>
                {
                    return Err(ClientError::TimedOut(self.limits.deadline));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Writes `bytes`, giving up at the deadline (at least a short grace period, so that an
    /// answer to a request read just in time still goes out).
    pub fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        let left = self.remaining().max(Duration::from_millis(200));
        self.stream.write_timeout(Some(left))?;
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }
}

/// Logs a warning at most once a minute per listener, counting the rest: one bad client
/// per second must not write a journal line per second.
#[derive(Debug)]
pub struct Warnings {
    what: &'static str,
    state: Mutex<(Option<Instant>, u64)>,
}

/// How often a rate-limited warning is logged at most.
pub const WARN_EVERY: Duration = Duration::from_secs(60);

impl Warnings {
    /// Warnings about `what` ("control socket").
    pub fn new(what: &'static str) -> Warnings {
        Warnings { what, state: Mutex::new((None, 0)) }
    }

    /// Logs `msg` unless one was logged less than [`WARN_EVERY`] ago; returns whether it
    /// was logged.
    pub fn warn(&self, msg: &str) -> bool {
        let mut s = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        if s.0.is_some_and(|last| now.duration_since(last) < WARN_EVERY) {
            s.1 += 1;
            return false;
        }
        let suppressed = std::mem::take(&mut s.1);
        s.0 = Some(now);
        drop(s);
        if suppressed > 0 {
            tracing::warn!(
                "{}: {msg} ({suppressed} more like it in the last {} s)",
                self.what,
                WARN_EVERY.as_secs()
            );
        } else {
            tracing::warn!("{}: {msg}", self.what);
        }
        true
    }
}

/// A running listener. Dropping it stops accepting and waits for the clients being served
/// (each ends by its deadline): an owner that releases the state lock after dropping its
/// listener knows no client thread can still change the table behind the next owner.
#[derive(Debug)]
pub struct Listener {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    active: Arc<AtomicUsize>,
    limits: Limits,
}

impl Listener {
    /// Accepts on `listener` in a thread named `name`, serving each connection with
    /// `serve` on a thread of its own; when [`Limits::max_clients`] are being served, a new
    /// connection gets `busy` instead.
    pub fn spawn<L, F, B>(
        name: &str,
        listener: L,
        limits: Limits,
        warnings: Arc<Warnings>,
        serve: F,
        busy: B,
    ) -> io::Result<Listener>
    where
        L: Accept,
        F: Fn(&mut Client<L::Conn>) -> Result<(), ClientError> + Send + Sync + 'static,
        B: Fn(&mut Client<L::Conn>) + Send + Sync + 'static,
    {
        listener.listen_nonblocking()?;
        let stop = Arc::new(AtomicBool::new(false));
        let active = Arc::new(AtomicUsize::new(0));
        let (flag, count) = (Arc::clone(&stop), Arc::clone(&active));
        let serve = Arc::new(serve);
        let client_name = format!("{name}-client");
        let thread = std::thread::Builder::new().name(name.into()).spawn(move || {
            while !flag.load(Ordering::Acquire) {
                let conn = match listener.accept_one() {
                    Ok(c) => c,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                    Err(e) => {
                        warnings.warn(&format!("accept: {e}"));
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                };
                let Ok(mut client) = Client::new(conn, limits) else { continue };
                if count.load(Ordering::Acquire) >= limits.max_clients {
                    busy(&mut client);
                    continue;
                }
                count.fetch_add(1, Ordering::AcqRel);
                let (serve, done, warn) =
                    (Arc::clone(&serve), Arc::clone(&count), Arc::clone(&warnings));
                let spawned =
                    std::thread::Builder::new().name(client_name.clone()).spawn(move || {
                        if let Err(e) = serve(&mut client) {
                            warn.warn(&e.to_string());
                        }
                        done.fetch_sub(1, Ordering::AcqRel);
                    });
                if let Err(e) = spawned {
                    count.fetch_sub(1, Ordering::AcqRel);
                    warnings.warn(&format!("cannot start a client thread: {e}"));
                }
            }
        })?;
        Ok(Listener { stop, thread: Some(thread), active, limits })
    }

    /// Clients being served now.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        // Past the deadline (and the write grace) a client thread only unwinds.
        let until = Instant::now() + self.limits.deadline + Duration::from_secs(1);
        while self.active() > 0 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo_server(dir: &std::path::Path, limits: Limits) -> (Listener, std::path::PathBuf) {
        let path = dir.join("s.sock");
        let l = UnixListener::bind(&path).unwrap();
        let server = Listener::spawn(
            "test",
            l,
            limits,
            Arc::new(Warnings::new("test")),
            |c: &mut Client<UnixStream>| {
                let line = c.read_until(b"\n")?;
                c.write_all(&line)?;
                Ok(())
            },
            |c: &mut Client<UnixStream>| {
                let _ = c.write_all(b"busy");
            },
        )
        .unwrap();
        (server, path)
    }

    const LIMITS: Limits =
        Limits { max_clients: 4, deadline: Duration::from_secs(2), max_request: 64 };

    #[test]
    fn a_slow_client_does_not_stall_the_next_one() {
        let dir = tempfile::tempdir().unwrap();
        let (_server, path) = echo_server(dir.path(), LIMITS);
        let mut slow = UnixStream::connect(&path).unwrap();
        slow.write_all(b"he").unwrap();
        let t0 = Instant::now();
        let mut fast = UnixStream::connect(&path).unwrap();
        fast.write_all(b"hi\n").unwrap();
        let mut got = String::new();
        fast.read_to_string(&mut got).unwrap();
        assert_eq!(got, "hi");
        assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
        // The slow one is cut off at its deadline.
        let mut rest = Vec::new();
        slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(slow.read_to_end(&mut rest).unwrap(), 0);
        assert!(t0.elapsed() < Duration::from_secs(4), "{:?}", t0.elapsed());
    }

    #[test]
    fn long_requests_are_cut_and_excess_clients_are_told_busy() {
        let dir = tempfile::tempdir().unwrap();
        let (server, path) = echo_server(dir.path(), LIMITS);
        let mut big = UnixStream::connect(&path).unwrap();
        // The server stops reading after the limit and closes: the writer sees an error or
        // the connection closed well before a megabyte went through.
        let sent = (0..256).take_while(|_| big.write_all(&[b'x'; 4096]).is_ok()).count();
        assert!(sent < 256, "the server kept reading a 1 MiB line");
        let idle: Vec<UnixStream> = (0..4).map(|_| UnixStream::connect(&path).unwrap()).collect();
        let deadline = Instant::now() + Duration::from_secs(2);
        while server.active() < 4 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut extra = UnixStream::connect(&path).unwrap();
        let mut got = String::new();
        extra.read_to_string(&mut got).unwrap();
        assert_eq!(got, "busy");
        drop(idle);
    }

    #[test]
    fn repeated_warnings_are_counted_not_repeated() {
        let w = Warnings::new("test");
        assert!(w.warn("one"));
        assert!(!w.warn("two"));
        assert!(!w.warn("three"));
        assert_eq!(w.state.lock().unwrap().1, 2);
    }
}
