//! A real OpenLDAP server (Debian's `slapd`) of a test's own: a private database under
//! `dc=wharf,dc=test` with `ou=people` and `ou=groups`, the `memberof` overlay (users carry
//! `memberOf`), plain LDAP and LDAPS on free ports of 127.0.0.1 with a certificate from a CA
//! made for it; users and groups added, changed and deleted with the `ldap-utils` commands.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The suffix of the test directory.
pub const LDAP_BASE: &str = "dc=wharf,dc=test";
/// Its administrator (the bind account tests configure Wharf with).
pub const LDAP_ADMIN_DN: &str = "cn=admin,dc=wharf,dc=test";
pub const LDAP_ADMIN_PASSWORD: &str = "ldap-admin-password";

const INSTALL: &str = "echo 'slapd slapd/no_configuration boolean true' | debconf-set-selections && \
                       apt-get install -y slapd ldap-utils openssl";

/// A running slapd, killed when dropped.
pub struct Slapd {
    dir: tempfile::TempDir,
    child: Option<Child>,
    pub port: u16,
    pub tls_port: u16,
}

fn require(program: &str) {
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|p| p.join(program).is_file()))
        || Path::new("/usr/sbin").join(program).is_file();
    assert!(found, "{program} is missing; install it with: {INSTALL}");
}

fn run(command: &mut Command) -> String {
    let out = command.output().unwrap_or_else(|e| panic!("run {command:?}: {e}"));
    assert!(out.status.success(), "{command:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A CA and a server certificate for 127.0.0.1, made with openssl.
fn certificates(dir: &Path) {
    let sh = |script: &str| run(Command::new("sh").arg("-c").arg(script).current_dir(dir));
    sh(
        "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj /CN=wharf-test-ldap-ca 2>/dev/null",
    );
    sh("openssl req -newkey rsa:2048 -nodes -keyout srv.key -out srv.csr -subj /CN=127.0.0.1 2>/dev/null");
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").expect("write san.ext");
    sh(
        "openssl x509 -req -in srv.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out srv.crt -days 2 -extfile san.ext 2>/dev/null",
    );
}

impl Slapd {
    /// Starts slapd with the base entries; ready when it answers a bind.
    pub fn start() -> Slapd {
        for program in ["slapd", "ldapadd", "ldapmodify", "ldapdelete", "ldapwhoami", "openssl"] {
            require(program);
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::create_dir_all(root.join("db")).expect("mkdir db");
        certificates(root);
        let (port, tls_port) = (crate::free_port(), crate::free_port());
        let conf = format!(
            "include /etc/ldap/schema/core.schema\n\
             include /etc/ldap/schema/cosine.schema\n\
             include /etc/ldap/schema/inetorgperson.schema\n\
             include /etc/ldap/schema/nis.schema\n\
             modulepath /usr/lib/ldap\n\
             moduleload back_mdb.so\n\
             moduleload memberof.so\n\
             pidfile {root}/slapd.pid\n\
             TLSCACertificateFile {root}/ca.crt\n\
             TLSCertificateFile {root}/srv.crt\n\
             TLSCertificateKeyFile {root}/srv.key\n\
             sizelimit 500\n\
             database mdb\n\
             maxsize 1073741824\n\
             suffix \"{LDAP_BASE}\"\n\
             rootdn \"{LDAP_ADMIN_DN}\"\n\
             rootpw {LDAP_ADMIN_PASSWORD}\n\
             directory {root}/db\n\
             index objectClass,uid,cn,member,memberOf eq\n\
             overlay memberof\n\
             access to attrs=userPassword by self write by anonymous auth by * none\n\
             access to * by * read\n",
            root = root.display()
        );
        std::fs::write(root.join("slapd.conf"), conf).expect("write slapd.conf");
        let child = Command::new("slapd")
            .arg("-f")
            .arg(root.join("slapd.conf"))
            .arg("-h")
            .arg(format!("ldap://127.0.0.1:{port}/ ldaps://127.0.0.1:{tls_port}/"))
            .args(["-d", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start slapd");
        let slapd = Slapd { dir, child: Some(child), port, tls_port };
        slapd.wait_ready();
        slapd.add(&format!(
            "dn: {LDAP_BASE}\nobjectClass: dcObject\nobjectClass: organization\ndc: wharf\no: Wharf test\n\n\
             dn: ou=people,{LDAP_BASE}\nobjectClass: organizationalUnit\nou: people\n\n\
             dn: ou=groups,{LDAP_BASE}\nobjectClass: organizationalUnit\nou: groups\n"
        ));
        slapd
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = Command::new("ldapwhoami")
                .args(["-x", "-H", &self.url(), "-D", LDAP_ADMIN_DN, "-w", LDAP_ADMIN_PASSWORD])
                .output()
                .is_ok_and(|o| o.status.success());
            if ok {
                return;
            }
            assert!(Instant::now() < deadline, "slapd did not answer within 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `ldap://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    /// `ldaps://127.0.0.1:PORT`.
    pub fn tls_url(&self) -> String {
        format!("ldaps://127.0.0.1:{}", self.tls_port)
    }

    /// The PEM of the CA that signed the server's certificate.
    pub fn ca_pem(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("ca.crt")).expect("read ca.crt")
    }

    fn tool(&self, program: &str, ldif: &str) {
        let mut child = Command::new(program)
            .args(["-x", "-H", &self.url(), "-D", LDAP_ADMIN_DN, "-w", LDAP_ADMIN_PASSWORD])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("run {program}: {e}"));
        use std::io::Write;
        child.stdin.take().expect("stdin").write_all(ldif.as_bytes()).expect("write ldif");
        let out = child.wait_with_output().expect("wait");
        assert!(out.status.success(), "{program} failed: {}\n{ldif}", String::from_utf8_lossy(&out.stderr));
    }

    /// Adds entries (LDIF).
    pub fn add(&self, ldif: &str) {
        self.tool("ldapadd", ldif);
    }

    /// Applies changes (LDIF with `changetype`).
    pub fn modify(&self, ldif: &str) {
        self.tool("ldapmodify", ldif);
    }

    /// The DN of user `uid`.
    pub fn user_dn(uid: &str) -> String {
        format!("uid={uid},ou=people,{LDAP_BASE}")
    }

    /// The DN of group `cn`.
    pub fn group_dn(cn: &str) -> String {
        format!("cn={cn},ou=groups,{LDAP_BASE}")
    }

    /// Adds a person who may bind with `password`.
    pub fn add_user(&self, uid: &str, password: &str) {
        self.add(&format!(
            "dn: {}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid}\nsn: {uid}\nuserPassword: {password}\n",
            Self::user_dn(uid)
        ));
    }

    /// Adds a group (groupOfNames) of `members` (uids; at least one).
    pub fn add_group(&self, cn: &str, members: &[&str]) {
        let lines: String = members.iter().map(|m| format!("member: {}\n", Self::user_dn(m))).collect();
        self.add(&format!("dn: {}\nobjectClass: groupOfNames\ncn: {cn}\n{lines}", Self::group_dn(cn)));
    }

    /// Deletes user `uid` (and their membership of `groups`).
    pub fn delete_user(&self, uid: &str, groups: &[&str]) {
        for group in groups {
            self.modify(&format!(
                "dn: {}\nchangetype: modify\ndelete: member\nmember: {}\n",
                Self::group_dn(group),
                Self::user_dn(uid)
            ));
        }
        let out = Command::new("ldapdelete")
            .args(["-x", "-H", &self.url(), "-D", LDAP_ADMIN_DN, "-w", LDAP_ADMIN_PASSWORD, &Self::user_dn(uid)])
            .output()
            .expect("ldapdelete");
        assert!(out.status.success(), "ldapdelete: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Stops the server (a test of the directory being down).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Where its files are.
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}
