//! Fixtures shared by Wharf's tests: launchers for the real programs they run against. A
//! launcher whose program is missing panics with the command that installs it (the test
//! command installs everything), so that no test skips silently.

mod dockerd;
mod moto;
mod swift;

pub use dockerd::Dockerd;
pub use moto::Moto;
pub use swift::{SWIFT_KEY, SWIFT_USER, Swift};

/// The Python virtual environment the test command fills (`WHARF_TEST_VENV`, else
/// `~/.cache/wharf-test-venv`).
pub fn test_venv() -> std::path::PathBuf {
    std::env::var_os("WHARF_TEST_VENV")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache/wharf-test-venv")))
        .expect("HOME or WHARF_TEST_VENV is set")
}

/// A TCP port nobody listens on now.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}
