//! Fixtures shared by Wharf's tests: launchers for the real programs they run against. A
//! launcher whose program is missing panics with the command that installs it (the test
//! command installs everything), so that no test skips silently.

mod dockerd;
mod moto;
mod samba;
mod slapd;
mod swift;

pub use dockerd::Dockerd;
pub use moto::Moto;
pub use samba::{AD_ADMIN, AD_ADMIN_PASSWORD, AD_BASE, SambaAd};
pub use slapd::{LDAP_ADMIN_DN, LDAP_ADMIN_PASSWORD, LDAP_BASE, Slapd};
pub use swift::{SWIFT_KEY, SWIFT_USER, Swift};

/// The Python virtual environment the test command fills (`WHARF_TEST_VENV`, else
/// `~/.cache/wharf-test-venv`).
pub fn test_venv() -> std::path::PathBuf {
    std::env::var_os("WHARF_TEST_VENV")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache/wharf-test-venv")))
        .expect("HOME or WHARF_TEST_VENV is set")
}

/// A TCP port nobody listens on now, for a process that a test starts later.
///
/// It is taken below the kernel's ephemeral range (32768 and up), so that neither another
/// `bind(":0")` nor the local end of an outgoing connection (which draw from that range and
/// are many while a cluster test runs) can take it between this call and the bind of the
/// program it is meant for. Tests running at once draw different ports from a sequence seeded
/// by the process id and the time.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    const LOW: u64 = 10_000;
    const SPAN: u64 = 32_768 - LOW;
    let seed = u64::from(std::process::id()).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (LOW + (seed.wrapping_add(n.wrapping_mul(7919)) % SPAN)) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free TCP port below the ephemeral range")
}
