//! Real servers for tests, on loopback: nginx (Debian's `nginx-light`) and a certificate
//! authority made with the `openssl` command.
//!
//! nginx cannot listen on port 0, so the test binds `127.0.0.1:0` itself and hands the listening
//! socket to nginx through the `NGINX` environment variable (nginx's own mechanism for taking
//! over sockets on a binary upgrade). The port is never guessed, and because the socket listens
//! before nginx starts, a client may connect at once: the kernel queues the connection until
//! nginx accepts it, so no test waits for the server to come up.

use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The access log format: `CONNECTION STATUS METHOD RANGE BYTES_SENT URI`, one line per response.
/// The connection serial number tells apart the connections a client opened.
pub const LOG_FORMAT: &str = "$connection $status $request_method \"$http_range\" $bytes_sent $request_uri";

/// A certificate and its key for nginx.
#[derive(Debug, Clone)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// What one nginx serves.
#[derive(Debug, Clone, Default)]
pub struct NginxConfig {
    /// The document root.
    pub root: PathBuf,
    /// Directives inside the `server` block (e.g. `limit_rate 2m;`, `location` blocks).
    pub server: String,
    /// Directives inside the `http` block (e.g. `limit_conn_zone ...;`).
    pub http: String,
    /// Serve https with this certificate.
    pub tls: Option<Tls>,
}

/// A running nginx; stopped when dropped.
pub struct Nginx {
    child: Child,
    port: u16,
    tls: bool,
    dir: tempfile::TempDir,
}

fn program(name: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"] {
        let path = Path::new(dir).join(name);
        if path.exists() {
            return path;
        }
    }
    PathBuf::from(name)
}

impl Nginx {
    /// Starts nginx with `config` on a fresh loopback port. Panics with a clear message when
    /// nginx is missing or refuses the configuration (`.ci/run` installs it).
    pub fn start(config: NginxConfig) -> Nginx {
        let dir = tempfile::tempdir().expect("a scratch directory for nginx");
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
        let port = listener.local_addr().expect("the listener's address").port();
        let fd = listener.as_raw_fd();
        let ssl = match &config.tls {
            Some(tls) => format!(
                "listen 127.0.0.1:{port} ssl;\n    ssl_certificate {};\n    ssl_certificate_key {};",
                tls.cert.display(),
                tls.key.display()
            ),
            None => format!("listen 127.0.0.1:{port};"),
        };
        let d = dir.path().display();
        let conf = format!(
            "daemon off;\nmaster_process on;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ worker_connections 512; }}\n\
             http {{\n  sendfile on;\n  default_type application/octet-stream;\n  \
             client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  \
             uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  \
             log_format shoal '{LOG_FORMAT}';\n  access_log {d}/access.log shoal;\n  {http}\n  \
             server {{\n    {ssl}\n    root {root};\n    {server}\n  }}\n}}\n",
            http = config.http,
            root = config.root.display(),
            server = config.server,
        );
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).expect("writing nginx.conf");
        // The listening socket must survive exec: clear close-on-exec on it.
        // SAFETY: `fd` is an open descriptor owned by `listener` for the duration of the call.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
        }
        let child = Command::new(program("nginx"))
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .arg("-c")
            .arg(&conf_path)
            .env("NGINX", format!("{fd};"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting nginx (apt-get install nginx-light)");
        // nginx has its copy; ours is closed so that only nginx accepts.
        drop(listener);
        Nginx {
            child,
            port,
            tls: config.tls.is_some(),
            dir,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The base URL, `http(s)://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("{}://127.0.0.1:{}", if self.tls { "https" } else { "http" }, self.port)
    }

    /// The base URL under the host name `localhost` (what the test certificate names).
    pub fn localhost_url(&self) -> String {
        format!("{}://localhost:{}", if self.tls { "https" } else { "http" }, self.port)
    }

    /// The access log so far (see [`LOG_FORMAT`]). nginx writes a line when a response ends,
    /// which may be a moment after the client has the last byte: to count responses, use
    /// [`Nginx::stop`], which returns the log once nginx has finished every request.
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }

    /// Stops nginx gracefully (it finishes open requests and writes their log lines) and
    /// returns the whole access log.
    pub fn stop(mut self) -> String {
        self.signal(libc::SIGQUIT);
        let _ = self.child.wait();
        self.access_log()
    }

    fn signal(&self, signal: libc::c_int) {
        // SAFETY: signalling a child we spawned; a reaped one is simply not found.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, signal);
        }
    }

    /// The error log so far.
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM stops at once (SIGQUIT, in `stop`, waits for open connections).
        if let Ok(None) = self.child.try_wait() {
            self.signal(libc::SIGTERM);
            let _ = self.child.wait();
        }
    }
}

/// A certificate authority and a server certificate it signed for `localhost` and 127.0.0.1,
/// made with the `openssl` command in a scratch directory.
pub struct Pki {
    /// The CA's certificate (PEM): what a client must trust.
    pub ca_cert: PathBuf,
    /// The server's certificate and key, for [`NginxConfig::tls`].
    pub server: Tls,
    _dir: tempfile::TempDir,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new(program("openssl"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("running openssl (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Pki {
    /// A fresh CA named `name` and a server certificate signed by it.
    pub fn new(name: &str) -> Pki {
        let dir = tempfile::tempdir().expect("a scratch directory for certificates");
        let d = dir.path();
        let subject = format!("/CN={name} test CA");
        openssl(
            d,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                &subject,
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        openssl(
            d,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=localhost",
            ],
        );
        std::fs::write(
            d.join("ext.cnf"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .expect("writing ext.cnf");
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.pem",
                "-days",
                "2",
                "-extfile",
                "ext.cnf",
            ],
        );
        Pki {
            ca_cert: d.join("ca.pem"),
            server: Tls {
                cert: d.join("server.pem"),
                key: d.join("server.key"),
            },
            _dir: dir,
        }
    }
}
