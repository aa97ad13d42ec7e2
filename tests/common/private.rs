//! Private `mariadbd` instances for tests that need server settings the shared stack must
//! not change.

use std::process::{Command, Stdio};
use std::time::Duration;

use super::{stack, unique};

/// The ROW-format settings Sluice needs, for a private server.
pub const ROW_CDC: [&str; 4] = [
    "--log-bin=binlog",
    "--binlog-format=ROW",
    "--binlog-row-image=FULL",
    "--binlog-row-metadata=FULL",
];

/// A private mariadbd with its own data dir and settings, stopped on drop.
pub struct PrivateServer {
    child: std::process::Child,
    /// TCP port on 127.0.0.1.
    pub port: u16,
    /// Unix socket, where root logs in without a password.
    pub socket: std::path::PathBuf,
    dir: tempfile::TempDir,
    args: Vec<String>,
}

impl PrivateServer {
    /// Installs and starts a server with `args`, a CDC user, and table `d.t`.
    pub fn start(args: &[&str]) -> PrivateServer {
        Self::start_at(super::free_port(), args)
    }

    /// [`PrivateServer::start`] on loopback port `port`.
    pub fn start_at(port: u16, args: &[&str]) -> PrivateServer {
        stack(); // MariaDB is installed
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        // A private tmpdir: parallel bootstraps in a shared /tmp can clash over temp names.
        let tmp = dir.path().join("tmp");
        std::fs::create_dir(&tmp).unwrap();
        let tmpdir = format!("--tmpdir={}", tmp.display());
        let user =
            String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout).unwrap();
        let user = format!("--user={}", user.trim());
        let install = Command::new("mariadb-install-db")
            .args([
                "--no-defaults",
                &format!("--datadir={}", data.display()),
                &user,
                &tmpdir,
            ])
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
            .output()
            .unwrap();
        assert!(
            install.status.success(),
            "{}",
            String::from_utf8_lossy(&install.stderr)
        );
        let socket = dir.path().join("sock");
        // The CDC user and table are made before the server takes connections, so a client
        // that is already knocking (a source started first) never meets a server without them.
        let s = stack();
        let init = dir.path().join("init.sql");
        std::fs::write(
            &init,
            format!(
                "CREATE USER IF NOT EXISTS '{u}'@'%' IDENTIFIED BY '{p}';\n\
                 GRANT SELECT, REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO '{u}'@'%';\n\
                 CREATE DATABASE IF NOT EXISTS d;\n\
                 CREATE TABLE IF NOT EXISTS d.t (id INT PRIMARY KEY);\n",
                u = s.cdc_user,
                p = s.cdc_password
            ),
        )
        .unwrap();
        // A placeholder until restart() spawns the server (reaped, so no zombie stays).
        let mut placeholder = Command::new("true").spawn().unwrap();
        placeholder.wait().unwrap();
        let mut server = PrivateServer {
            child: placeholder,
            port,
            socket,
            dir,
            args: args.iter().map(|a| a.to_string()).collect(),
        };
        server.restart();
        server
    }

    /// Kills the server (SIGKILL): a crash, recovered at the next start.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the server again on its port and data directory (the statements run at every
    /// start are idempotent) and waits until it answers.
    pub fn restart(&mut self) {
        let user =
            String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout).unwrap();
        let path = |name: &str| self.dir.path().join(name).display().to_string();
        self.child = Command::new("/usr/sbin/mariadbd")
            .args(["--no-defaults", &format!("--user={}", user.trim())])
            .arg(format!("--datadir={}", path("data")))
            .arg(format!("--tmpdir={}", path("tmp")))
            .args([
                &format!("--port={}", self.port),
                "--bind-address=127.0.0.1",
                "--server-id=1",
            ])
            .arg(format!("--socket={}", self.socket.display()))
            .arg(format!("--init-file={}", path("init.sql")))
            .args(["--skip-name-resolve", "--innodb-buffer-pool-size=16M"])
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + super::PATIENCE;
        while !self.sql("SELECT 1").status.success() {
            assert!(
                std::time::Instant::now() < deadline,
                "private mariadbd did not start"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// A file in the data directory.
    pub fn data_file(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join("data").join(name)
    }

    /// Purges the binlogs before `file`, waiting out the server's dump threads of replicas
    /// that just left (a file a dump thread still has open is skipped by PURGE).
    pub fn purge_to(&self, file: &str) {
        let deadline = std::time::Instant::now() + super::PATIENCE;
        loop {
            let out = self.sql(&format!("PURGE BINARY LOGS TO '{file}'; SHOW BINARY LOGS"));
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let listed = String::from_utf8_lossy(&out.stdout).into_owned();
            let first = listed.lines().nth(1).unwrap_or_default().to_string();
            if first.starts_with(file) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "PURGE left {first}:\n{listed}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Runs SQL as root through the `mariadb` client.
    pub fn sql(&self, sql: &str) -> std::process::Output {
        Command::new("mariadb")
            .args([
                "--no-defaults",
                "-uroot",
                &format!("--socket={}", self.socket.display()),
            ])
            .args(["-e", sql])
            .output()
            .unwrap()
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A source-role config for table `d.t` of a private server on `port`, written into `dir`.
pub fn private_config(dir: &std::path::Path, port: u16) -> std::path::PathBuf {
    let s = stack();
    let config = dir.join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            "tables = [\"d.t\"]\n[source]\nhost = \"127.0.0.1\"\nport = {port}\nuser = \"{}\"\n\
             password = \"{}\"\nserver_id = 4242\nstate_dir = \"{}\"\n[kafka]\n\
             brokers = \"{}\"\ntopic_prefix = \"{}\"\n[registry]\nurl = \"{}\"\n\
             [metrics]\nlisten = \"127.0.0.1:0\"\n",
            s.cdc_user,
            s.cdc_password,
            dir.join("state").display(),
            s.brokers,
            unique("it"),
            s.registry_url,
        ),
    )
    .unwrap();
    config
}
