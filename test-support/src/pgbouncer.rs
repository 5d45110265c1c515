//! A real PgBouncer (Debian's `pgbouncer`) in `pool_mode = transaction` on
//! a free loopback port, in front of the tests' PostgreSQL server, for as
//! long as the handle lives.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running PgBouncer; stopped (and its folder removed) when dropped.
#[derive(Debug)]
pub struct Pgbouncer {
    child: Child,
    dir: PathBuf,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
}

impl Pgbouncer {
    /// Starts PgBouncer in transaction mode in front of the server of
    /// `direct_url` (`postgres://user@host:port/db`), trusting every user.
    /// Panics, saying how to install it, when `pgbouncer` is missing.
    pub fn start(direct_url: &str) -> Pgbouncer {
        let binary = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("pgbouncer is required: apt-get install pgbouncer (.ci/run installs it)");
        let rest = direct_url.split_once("://").map_or(direct_url, |(_, r)| r);
        let (user, rest) = rest.split_once('@').expect("a URL with a user");
        let user = user.split(':').next().unwrap_or(user);
        let hostport = rest.split('/').next().unwrap_or(rest);
        let (host, port) = hostport.rsplit_once(':').unwrap_or((hostport, "5432"));
        let listen_port = free_port();
        let dir =
            std::env::temp_dir().join(format!("cf-pgbouncer-{}-{listen_port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let d = dir.display();
        std::fs::write(
            dir.join("pgbouncer.ini"),
            format!(
                "[databases]\n* = host={host} port={port}\n\n[pgbouncer]\n\
                 listen_addr = 127.0.0.1\nlisten_port = {listen_port}\nunix_socket_dir =\n\
                 auth_type = trust\nauth_file = {d}/users.txt\npool_mode = transaction\n\
                 max_client_conn = 500\ndefault_pool_size = 8\n\
                 ignore_startup_parameters = extra_float_digits\n\
                 logfile = {d}/pgbouncer.log\npidfile = {d}/pgbouncer.pid\n"
            ),
        )
        .unwrap();
        std::fs::write(dir.join("users.txt"), format!("\"{user}\" \"\"\n")).unwrap();
        // PgBouncer refuses to run as root: then as the server's own user.
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        let ini = dir.join("pgbouncer.ini");
        let mut cmd = if root {
            let status = Command::new("chown")
                .args(["-R", "postgres"])
                .arg(&dir)
                .status()
                .unwrap();
            assert!(status.success(), "chown of {d} to postgres");
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", binary]).arg(&ini);
            c
        } else {
            let mut c = Command::new(binary);
            c.arg(&ini);
            c
        };
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting pgbouncer");
        let mut bouncer = Pgbouncer {
            child,
            dir,
            port: listen_port,
        };
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", listen_port)).is_err() {
            if let Ok(Some(status)) = bouncer.child.try_wait() {
                panic!("pgbouncer exited with {status}: {}", bouncer.log());
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "pgbouncer did not listen within 10 s: {}",
                bouncer.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        bouncer
    }

    /// `direct_url` with this PgBouncer's port instead of the server's.
    pub fn url(&self, direct_url: &str) -> String {
        let (scheme, rest) = direct_url.split_once("://").expect("a URL");
        let (auth, rest) = rest.split_once('@').expect("a URL with a user");
        let path = rest.split_once('/').map_or("", |(_, p)| p);
        format!("{scheme}://{auth}@127.0.0.1:{}/{path}", self.port)
    }

    /// What it logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default()
    }
}

impl Drop for Pgbouncer {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("pgbouncer.pid")) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A port nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
