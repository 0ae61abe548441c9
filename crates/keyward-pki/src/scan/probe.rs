//! The probes: one TCP connection per ClientHello, answers read with a deadline, and the
//! enumeration of versions, cipher suites (offer all, remove the one chosen, offer again,
//! until refused, as sslyze does) and groups (one per ClientHello).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::clienthello::{ClientHello, Offer, version, x25519_share};
use super::report::{GroupResult, KeyExchange, ScanResult, SuiteResult, VersionResult};
use super::serverhello::{Depth, Flight, Response, ServerKx, read_response};
use super::suites::{self, GROUPS, LEGACY_SUITES, TLS13_SUITES};
use super::{ScanError, ScanOptions, WireError, cert};

/// The versions probed, oldest first. (SSL 2.0 has another record format and is not.)
pub const VERSIONS: [u16; 5] = [
    version::SSL3,
    version::TLS10,
    version::TLS11,
    version::TLS12,
    version::TLS13,
];

/// The groups offered when the group is not what is being probed.
const DEFAULT_GROUPS: [u16; 9] = [
    0x001D, 0x0017, 0x0018, 0x0019, 0x001E, 0x11EC, 0x0100, 0x0101, 0x0102,
];

/// The whole scan gets this many probe timeouts; after that no probe starts and the
/// result is marked incomplete.
pub const SCAN_BUDGET_TIMEOUTS: u32 = 8;

/// Where and how to connect.
#[derive(Debug)]
pub struct Prober {
    addr: SocketAddr,
    sni: Option<String>,
    timeout: Duration,
    deadline: Instant,
    ran_out: AtomicBool,
}

/// A stream whose every read gets only the time left before one deadline, so a server
/// dribbling bytes cannot stretch an exchange beyond it.
#[derive(Debug)]
pub(crate) struct Deadline<'a> {
    pub(crate) stream: &'a TcpStream,
    pub(crate) until: Instant,
}

impl Read for Deadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        self.stream.set_read_timeout(Some(left))?;
        self.stream.read(buf)
    }
}

impl Write for Deadline<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.stream.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.stream.flush()
    }
}

impl Prober {
    /// Resolves the target and checks that it accepts a TCP connection.
    pub fn new(options: &ScanOptions) -> Result<Self, ScanError> {
        let target = format!("{}:{}", options.host, options.port);
        let fail = |reason: String| ScanError::Connect {
            target: target.clone(),
            reason,
        };
        let addr = (options.host.as_str(), options.port)
            .to_socket_addrs()
            .map_err(|e| fail(e.to_string()))?
            .next()
            .ok_or_else(|| fail("no address".into()))?;
        TcpStream::connect_timeout(&addr, options.timeout).map_err(|e| fail(e.to_string()))?;
        Ok(Self {
            addr,
            sni: options.sni_to_send().map(str::to_owned),
            timeout: options.timeout,
            deadline: Instant::now() + options.timeout * SCAN_BUDGET_TIMEOUTS,
            ran_out: AtomicBool::new(false),
        })
    }

    /// The time a probe starting now may take: the timeout, cut to the scan's deadline.
    pub(crate) fn allowance(&self) -> Result<Duration, WireError> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            self.ran_out.store(true, Ordering::SeqCst);
            return Err(WireError::Timeout);
        }
        Ok(left.min(self.timeout))
    }

    /// Whether the scan's deadline cut some probe short.
    pub fn ran_out(&self) -> bool {
        self.ran_out.load(Ordering::SeqCst)
    }

    /// A connected stream with write and read timeouts.
    pub fn connect(&self) -> Result<TcpStream, WireError> {
        let stream = TcpStream::connect_timeout(&self.addr, self.allowance()?)
            .map_err(WireError::from_io)?;
        stream
            .set_write_timeout(Some(self.timeout))
            .and_then(|()| stream.set_read_timeout(Some(self.timeout)))
            .map_err(WireError::from_io)?;
        Ok(stream)
    }

    /// The name to send as SNI.
    pub fn sni(&self) -> Option<&str> {
        self.sni.as_deref()
    }

    /// The connect timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sends one ClientHello and reads the answer, all within the timeout.
    pub fn exchange(&self, offer: &Offer<'_>, depth: Depth) -> Result<Response, WireError> {
        let record = ClientHello::new(offer)?.encode()?;
        let mut stream = self.connect()?;
        stream.write_all(&record).map_err(WireError::from_io)?;
        let until = Instant::now() + self.allowance()?;
        let mut reader = Deadline {
            stream: &stream,
            until,
        };
        let answer = read_response(&mut reader, depth);
        if matches!(answer, Err(WireError::Timeout)) && until >= self.deadline {
            self.ran_out.store(true, Ordering::SeqCst);
        }
        answer
    }

    /// The suites accepted with `v` (SSL 3.0 to TLS 1.2), each with its flight.
    fn legacy_suites(&self, v: u16) -> Accepted {
        let mut offered: Vec<u16> = LEGACY_SUITES.iter().map(|s| s.id).collect();
        let mut accepted = Vec::new();
        while !offered.is_empty() {
            let offer = Offer {
                version: v,
                suites: &offered,
                groups: &DEFAULT_GROUPS,
                key_shares: &[],
                sni: self.sni(),
            };
            match self.exchange(&offer, Depth::Flight) {
                Ok(Response::Hello(f))
                    if f.hello.version() == v && offered.contains(&f.hello.cipher_suite) =>
                {
                    let id = f.hello.cipher_suite;
                    offered.retain(|s| *s != id);
                    accepted.push((id, f));
                }
                Err(WireError::Random) => return Err(WireError::Random),
                // An alert, another version, a close, a stall or garbage: refused.
                _ => break,
            }
        }
        Ok(accepted)
    }

    /// The TLS 1.3 suites accepted, each with the group of the ServerHello.
    fn tls13_suites(&self) -> Accepted {
        let mut offered: Vec<u16> = TLS13_SUITES.iter().map(|s| s.id).collect();
        let mut accepted = Vec::new();
        while !offered.is_empty() {
            let shares = [(suites::X25519, x25519_share()?)];
            let offer = Offer {
                version: version::TLS13,
                suites: &offered,
                groups: &DEFAULT_GROUPS,
                key_shares: &shares,
                sni: self.sni(),
            };
            match self.exchange(&offer, Depth::Hello) {
                Ok(Response::Hello(f))
                    if f.hello.version() == version::TLS13
                        && offered.contains(&f.hello.cipher_suite) =>
                {
                    let id = f.hello.cipher_suite;
                    offered.retain(|s| *s != id);
                    accepted.push((id, f));
                }
                Err(WireError::Random) => return Err(WireError::Random),
                _ => break,
            }
        }
        Ok(accepted)
    }

    /// Whether `group` is accepted with `v` (TLS 1.3: a ServerHello or HelloRetryRequest
    /// for it after an empty key_share; TLS 1.2 and older: a ServerKeyExchange on it,
    /// offering only ECDHE suites).
    fn group_accepted(&self, v: u16, group: u16) -> Result<bool, WireError> {
        let ids: Vec<u16>;
        let (suites, depth) = if v == version::TLS13 {
            ids = TLS13_SUITES.iter().map(|s| s.id).collect();
            (&ids, Depth::Hello)
        } else {
            ids = LEGACY_SUITES
                .iter()
                .filter(|s| s.is_ecdhe())
                .map(|s| s.id)
                .collect();
            (&ids, Depth::Flight)
        };
        let offer = Offer {
            version: v,
            suites,
            groups: &[group],
            key_shares: &[],
            sni: self.sni(),
        };
        Ok(match self.exchange(&offer, depth) {
            Ok(Response::Hello(f)) if f.hello.version() == v => {
                if v == version::TLS13 {
                    f.hello.key_share_group == Some(group)
                } else {
                    f.kx == Some(ServerKx::Ecdhe { group })
                }
            }
            Err(WireError::Random) => return Err(WireError::Random),
            _ => false,
        })
    }
}

/// TLS_FALLBACK_SCSV (RFC 7507 §6), a signalling cipher suite value.
const FALLBACK_SCSV: u16 = 0x5600;
/// The inappropriate_fallback alert (RFC 7507 §2).
const INAPPROPRIATE_FALLBACK: u8 = 86;

impl Prober {
    /// Whether the server refuses a downgrade (RFC 7507): a ClientHello for the second
    /// highest supported version, with suites it accepted there and TLS_FALLBACK_SCSV,
    /// must get an inappropriate_fallback alert. `None` with fewer than two versions.
    fn fallback_scsv(&self, flights: &[(u16, Flight)]) -> Result<Option<bool>, WireError> {
        let mut versions: Vec<u16> = flights.iter().map(|(v, _)| *v).collect();
        versions.sort_unstable();
        versions.dedup();
        let Some(&lower) = versions.len().checked_sub(2).and_then(|i| versions.get(i)) else {
            return Ok(None);
        };
        let mut offered: Vec<u16> = flights
            .iter()
            .filter(|(v, _)| *v == lower)
            .map(|(_, f)| f.hello.cipher_suite)
            .collect();
        offered.push(FALLBACK_SCSV);
        let offer = Offer {
            version: lower,
            suites: &offered,
            groups: &DEFAULT_GROUPS,
            key_shares: &[],
            sni: self.sni(),
        };
        Ok(match self.exchange(&offer, Depth::Hello) {
            Ok(Response::Alert { description, .. }) => Some(description == INAPPROPRIATE_FALLBACK),
            Ok(Response::Hello(f)) => Some(f.hello.version() != lower),
            Err(WireError::Random) => return Err(WireError::Random),
            Err(_) => None,
        })
    }
}

fn key_exchange(v: u16, flight: &Flight) -> Option<KeyExchange> {
    let ecdh = |id: u16| KeyExchange {
        kind: "ECDH".into(),
        group: Some(suites::group_name(id)),
        bits: suites::group(id).map_or(0, |g| g.bits),
    };
    if v == version::TLS13 {
        return flight.hello.key_share_group.map(|id| {
            let mut kx = ecdh(id);
            if suites::group(id).is_some_and(|g| !g.is_ec && g.name.starts_with("ffdhe")) {
                kx.kind = "DH".into();
            }
            kx
        });
    }
    match flight.kx? {
        ServerKx::Ecdhe { group } => Some(ecdh(group)),
        ServerKx::Dhe { p_bits } => Some(KeyExchange {
            kind: "DH".into(),
            group: None,
            bits: p_bits,
        }),
    }
}

fn suite_result(v: u16, id: u16, flight: &Flight) -> SuiteResult {
    let known = suites::suite(id);
    SuiteResult {
        id: format!("0x{id:04x}"),
        name: known.map_or_else(|| format!("unknown-0x{id:04x}"), |s| s.name.to_owned()),
        aead: known.is_some_and(|s| s.is_aead()),
        forward_secret: known.is_some_and(|s| s.is_forward_secret()),
        weaknesses: known.map_or_else(Vec::new, |s| {
            s.weaknesses().into_iter().map(str::to_owned).collect()
        }),
        key_exchange: key_exchange(v, flight),
    }
}

/// The suites accepted with one version, each with the flight that accepted it.
type Accepted = Result<Vec<(u16, Flight)>, WireError>;

fn random_failed(_: WireError) -> ScanError {
    ScanError::Random
}

/// Runs every probe against the target: all versions in parallel, then the groups of the
/// highest version (in parallel), then the certificate.
pub fn scan(options: &ScanOptions) -> Result<ScanResult, ScanError> {
    let started = Instant::now();
    let prober = Prober::new(options)?;
    let target = format!("{}:{}", options.host, options.port);

    let per_version: Vec<(u16, Accepted)> = thread::scope(|s| {
        let handles: Vec<_> = VERSIONS
            .iter()
            .map(|&v| {
                let prober = &prober;
                s.spawn(move || {
                    let found = if v == version::TLS13 {
                        prober.tls13_suites()
                    } else {
                        prober.legacy_suites(v)
                    };
                    (v, found)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or((0, Err(WireError::Closed))))
            .collect()
    });
    let mut versions = Vec::new();
    let mut flights: Vec<(u16, Flight)> = Vec::new();
    for (v, found) in per_version {
        let found = found.map_err(random_failed)?;
        versions.push(VersionResult {
            version: version::name(v).to_owned(),
            supported: !found.is_empty(),
            cipher_suites: found
                .iter()
                .map(|(id, f)| suite_result(v, *id, f))
                .collect(),
        });
        flights.extend(found.into_iter().map(|(_, f)| (v, f)));
    }
    let fallback_scsv = prober.fallback_scsv(&flights).map_err(random_failed)?;
    let highest = VERSIONS
        .iter()
        .rev()
        .copied()
        .find(|v| {
            versions
                .iter()
                .any(|r| r.supported && r.version == version::name(*v))
        })
        .ok_or_else(|| ScanError::NoTls(target.clone()))?;

    let candidates: Vec<_> = GROUPS
        .iter()
        .filter(|g| highest == version::TLS13 || g.is_ec)
        .collect();
    let accepted: Vec<Result<bool, WireError>> = thread::scope(|s| {
        let handles: Vec<_> = candidates
            .iter()
            .map(|g| {
                let prober = &prober;
                s.spawn(move || prober.group_accepted(highest, g.id))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or(Ok(false)))
            .collect()
    });
    let mut groups = Vec::new();
    for (g, ok) in candidates.iter().zip(accepted) {
        if ok.map_err(random_failed)? {
            groups.push(GroupResult {
                name: g.name.to_owned(),
                id: g.id,
                bits: g.bits,
                elliptic_curve: g.is_ec,
            });
        }
    }

    // TLS 1.2-and-older facts from the flights of the highest such version.
    let top_legacy = flights
        .iter()
        .map(|(v, _)| *v)
        .filter(|v| *v < version::TLS13)
        .max();
    let legacy: Vec<&Flight> = flights
        .iter()
        .filter(|(v, _)| Some(*v) == top_legacy)
        .map(|(_, f)| f)
        .collect();
    let any = |p: fn(&Flight) -> bool| (!legacy.is_empty()).then(|| legacy.iter().any(|f| p(f)));
    let all = |p: fn(&Flight) -> bool| (!legacy.is_empty()).then(|| legacy.iter().all(|f| p(f)));
    let compression = any(|f| f.hello.compression != 0);
    let extended_master_secret = all(|f| f.hello.extended_master_secret);
    let secure_renegotiation = all(|f| f.hello.secure_renegotiation);

    let legacy_cert = || {
        legacy
            .iter()
            .rev()
            .find(|f| !f.certificates.is_empty())
            .zip(top_legacy)
            .map(|(f, v)| cert::from_flight(options, f, version::name(v)))
    };
    let mut obtained = if highest == version::TLS13 {
        cert::from_tls13(options, &prober)
    } else {
        legacy_cert().unwrap_or(cert::Obtained {
            report: None,
            client_auth: "unknown".to_owned(),
            error: Some("no Certificate message was received".to_owned()),
        })
    };
    if obtained.report.is_none() {
        // A TLS 1.3 handshake rustls cannot complete (say, only groups it lacks): the
        // certificate of an older version is still the server's.
        if let Some(older) = legacy_cert().filter(|o| o.report.is_some()) {
            obtained = older;
        }
    }

    Ok(ScanResult {
        target,
        server_name: options.server_name().to_owned(),
        versions,
        groups,
        groups_probed_with: Some(version::name(highest).to_owned()),
        certificate: obtained.report,
        certificate_error: obtained.error,
        client_auth: obtained.client_auth,
        incomplete: prober.ran_out(),
        compression,
        fallback_scsv,
        extended_master_secret,
        secure_renegotiation,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    })
}
