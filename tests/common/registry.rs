//! Private `sluice registry` processes, for tests that change global settings or delete
//! subjects, which the stack's shared registry must not see.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `sluice registry` process on a free port, with its own data dir; killed on drop.
pub struct Registry {
    child: Child,
    pub url: String,
    port: u16,
    users: Option<String>,
    dir: tempfile::TempDir,
}

impl Registry {
    /// Starts one; with `users` (`user:password,...`) it demands basic auth.
    pub fn start(users: Option<&str>) -> Registry {
        Self::start_at(super::free_port(), users)
    }

    /// [`Registry::start`] on loopback port `port`.
    pub fn start_at(port: u16, users: Option<&str>) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let child = Self::spawn(port, users, dir.path());
        Registry {
            child,
            url: format!("http://127.0.0.1:{port}"),
            port,
            users: users.map(str::to_string),
            dir,
        }
    }

    /// Kills the registry (SIGKILL).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the killed registry again on its port and data.
    pub fn restart(&mut self) {
        self.child = Self::spawn(self.port, self.users.as_deref(), self.dir.path());
    }

    fn spawn(port: u16, users: Option<&str>, dir: &std::path::Path) -> Child {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
        cmd.args(["registry", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--data")
            .arg(dir.join("data"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(u) = users {
            cmd.env("SLUICE_REGISTRY_USERS", u);
        }
        let child = cmd.spawn().unwrap();
        let deadline = Instant::now() + super::PATIENCE;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the registry did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        child
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A private tansu broker with SQLite storage in a directory of its own; killed on drop.
pub struct Broker {
    child: Child,
    port: u16,
    advertised: u16,
    dir: tempfile::TempDir,
}

impl Broker {
    /// Starts one on loopback port `port` (`scripts/stack.sh` installed tansu).
    pub fn start_at(port: u16) -> Broker {
        Self::start_advertising(port, port)
    }

    /// Starts one on loopback port `port` that tells clients to connect to port `advertised`
    /// (a proxy in front of it).
    pub fn start_advertising(port: u16, advertised: u16) -> Broker {
        super::stack();
        let dir = tempfile::tempdir().unwrap();
        let child = Self::spawn(port, advertised, dir.path());
        Broker {
            child,
            port,
            advertised,
            dir,
        }
    }

    /// Kills the broker (SIGKILL).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the killed broker again on its port and storage.
    pub fn restart(&mut self) {
        self.child = Self::spawn(self.port, self.advertised, self.dir.path());
    }

    fn spawn(port: u16, advertised: u16, dir: &std::path::Path) -> Child {
        let url = format!("tcp://127.0.0.1:{port}");
        let advertised = format!("tcp://127.0.0.1:{advertised}");
        // Found on PATH, as scripts/stack.sh finds it (scripts/test.sh puts ~/.cargo/bin there).
        // The sqlite:// path is relative to the working directory.
        let child = Command::new("tansu")
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &advertised,
            ])
            .args(["--storage-engine", "sqlite://tansu.db"])
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + super::PATIENCE;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the private broker did not listen"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        child
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
