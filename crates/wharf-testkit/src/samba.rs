//! A real Active Directory domain controller (Samba) of a test's own: a domain `WHARF.TEST`
//! provisioned in a temporary folder and served from a network namespace of its own (so its
//! many ports are private), reached from the host over a veth pair at `10.231.K.2`. Users and
//! groups are managed with `samba-tool`. Needs root (namespaces).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The domain's base DN, and its administrator (as a UPN, which AD takes as a bind DN).
pub const AD_BASE: &str = "DC=wharf,DC=test";
pub const AD_ADMIN: &str = "Administrator@wharf.test";
pub const AD_ADMIN_PASSWORD: &str = "Passw0rd!Wharf-AD";

const INSTALL: &str = "apt-get install -y samba ldap-utils iproute2";

/// A running Samba AD DC, stopped and its namespace removed when dropped.
pub struct SambaAd {
    _dir: tempfile::TempDir,
    child: Option<Child>,
    netns: String,
    host_link: String,
    /// The DC's address, as the host reaches it.
    pub ip: String,
}

fn run(command: &mut Command) -> String {
    let out = command.output().unwrap_or_else(|e| panic!("run {command:?}: {e} (install with: {INSTALL})"));
    assert!(
        out.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl SambaAd {
    /// Provisions the domain and starts the DC; ready when its LDAP answers.
    pub fn start() -> SambaAd {
        for program in ["samba", "samba-tool", "ldapsearch", "ip"] {
            let found = std::env::var_os("PATH")
                .is_some_and(|paths| std::env::split_paths(&paths).any(|p| p.join(program).is_file()));
            assert!(found, "{program} is missing; install it with: {INSTALL}");
        }
        let k = (std::process::id() % 200) as u8 + 20;
        let (netns, host_link, peer) = (format!("wharf-ad-{k}"), format!("wad{k}h"), format!("wad{k}n"));
        let (host_ip, ip) = (format!("10.231.{k}.1"), format!("10.231.{k}.2"));
        // A namespace left by a killed run of the same number goes first.
        let _ = Command::new("ip").args(["link", "del", &host_link]).output();
        let _ = Command::new("ip").args(["netns", "del", &netns]).output();
        run(Command::new("ip").args(["netns", "add", &netns]));
        run(Command::new("ip").args(["-n", &netns, "link", "set", "lo", "up"]));
        run(Command::new("ip").args(["link", "add", &host_link, "type", "veth", "peer", "name", &peer]));
        run(Command::new("ip").args(["link", "set", &peer, "netns", &netns]));
        run(Command::new("ip").args(["addr", "add", &format!("{host_ip}/30"), "dev", &host_link]));
        run(Command::new("ip").args(["link", "set", &host_link, "up"]));
        run(Command::new("ip").args(["-n", &netns, "addr", "add", &format!("{ip}/30"), "dev", &peer]));
        run(Command::new("ip").args(["-n", &netns, "link", "set", &peer, "up"]));
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let target = root.join("samba");
        run(Command::new("samba-tool").args([
            "domain",
            "provision",
            &format!("--targetdir={}", target.display()),
            "--realm=WHARF.TEST",
            "--domain=WHARF",
            "--server-role=dc",
            "--dns-backend=NONE",
            "--use-rfc2307",
            &format!("--adminpass={AD_ADMIN_PASSWORD}"),
            "--host-name=dc1",
            &format!("--option=interfaces={peer}"),
            "--option=bind interfaces only=yes",
        ]));
        let conf = target.join("etc/smb.conf");
        let text = std::fs::read_to_string(&conf).expect("read smb.conf");
        let extra = format!(
            "[global]\n\tldap server require strong auth = no\n\tpid directory = {0}\n\tlog file = {0}/log.%m\n",
            root.display()
        );
        let text = text.replacen("[global]\n", &extra, 1).replace("\tlog file = /var/log/samba/log.%m\n", "");
        std::fs::write(&conf, text).expect("write smb.conf");
        let child = Command::new("ip")
            .args(["netns", "exec", &netns, "samba", "-i", "-M", "single", "-s"])
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start samba");
        let ad = SambaAd { _dir: dir, child: Some(child), netns, host_link, ip };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let answered = Command::new("ldapsearch")
                .args(["-x", "-H", &ad.url(), "-b", "", "-s", "base", "namingContexts"])
                .output()
                .is_ok_and(|o| o.status.success());
            if answered {
                return ad;
            }
            assert!(Instant::now() < deadline, "the Samba DC did not answer LDAP within 60 s");
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// `ldap://10.231.K.2`.
    pub fn url(&self) -> String {
        format!("ldap://{}", self.ip)
    }

    /// `samba-tool ARGS` against the DC as its administrator.
    pub fn tool(&self, args: &[&str]) -> String {
        let admin = format!("Administrator%{AD_ADMIN_PASSWORD}");
        run(Command::new("samba-tool").args(args).args(["-H", &self.url(), "-U", &admin]))
    }

    /// The DN of a user or group of `CN=Users` (a user's CN is their full name).
    pub fn dn(cn: &str) -> String {
        format!("CN={cn},CN=Users,{AD_BASE}")
    }
}

impl Drop for SambaAd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new("ip").args(["link", "del", &self.host_link]).output();
        let _ = Command::new("ip").args(["netns", "del", &self.netns]).output();
    }
}
