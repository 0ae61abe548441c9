//! The database URL, parsed and checked; shown without its password.

use std::fmt;
use std::time::Duration;

use ::postgres::Config;

use crate::StoreError;

/// How long connecting may take, unless the URL says otherwise.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the server lets a session sit idle inside a transaction before ending it.
const IDLE_IN_TRANSACTION: Duration = Duration::from_secs(60);
/// How long sent data may go unacknowledged before the connection is given up.
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);

/// A PostgreSQL connection URL (`postgres://user:password@host:port/dbname`), checked.
/// Its `Display` and `Debug` leave the password out.
#[derive(Clone)]
pub struct DatabaseUrl {
    config: Config,
}

impl DatabaseUrl {
    pub(super) fn config(&self) -> &Config {
        &self.config
    }

    /// Parses and checks a URL; the error never repeats it (it may hold a password).
    pub fn parse(url: &str) -> Result<Self, StoreError> {
        let bad = |why: &str| StoreError::InvalidUrl(why.to_owned());
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(bad("must start with postgres:// or postgresql://"));
        }
        // tokio-postgres's parse errors name options and values' kinds, never the URL.
        let mut config: Config = url
            .parse()
            .map_err(|e: ::postgres::Error| StoreError::InvalidUrl(e.to_string()))?;
        if config.get_ssl_mode() == ::postgres::config::SslMode::Require {
            return Err(bad(
                "sslmode=require: keyward does not speak TLS to PostgreSQL yet \
                 (use a unix socket or a private network)",
            ));
        }
        if config.get_hosts().is_empty() {
            return Err(bad("no host"));
        }
        if config.get_user().is_none() {
            return Err(bad("no user name"));
        }
        if config.get_dbname().is_none() {
            return Err(bad("no database name"));
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("keyward");
        }
        // A node that stops mid-transaction (frozen, cut off) must not hold its locks,
        // the audit writers' among them, for long: every keyward transaction runs its
        // statements back to back, so a minute idle inside one means it is gone.
        let options = format!(
            "{} -c idle_in_transaction_session_timeout={}",
            config.get_options().unwrap_or(""),
            IDLE_IN_TRANSACTION.as_millis()
        );
        config.options(options.trim_start());
        // Data sent to a server that stopped answering fails the call after this long,
        // rather than after the kernel's many minutes of retransmissions.
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(TCP_USER_TIMEOUT);
        }
        Ok(Self { config })
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "postgres://{}@", self.config.get_user().unwrap_or(""))?;
        let ports = self.config.get_ports();
        for (i, host) in self.config.get_hosts().iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            match host {
                ::postgres::config::Host::Tcp(name) => f.write_str(name)?,
                ::postgres::config::Host::Unix(path) => write!(f, "[{}]", path.display())?,
            }
            if let Some(port) = ports.get(i).or(ports.first()) {
                write!(f, ":{port}")?;
            }
        }
        write!(f, "/{}", self.config.get_dbname().unwrap_or(""))
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::DatabaseUrl;

    #[test]
    fn urls_show_no_password_and_bad_ones_are_refused() {
        let url = DatabaseUrl::parse("postgres://kw:s3cret@db.internal:5433/keys").unwrap();
        assert_eq!(url.to_string(), "postgres://kw@db.internal:5433/keys");
        assert!(!format!("{url:?}").contains("s3cret"));
        let options = url.config().get_options().unwrap();
        assert_eq!(options, "-c idle_in_transaction_session_timeout=60000");
        assert!(url.config().get_tcp_user_timeout().is_some());
        let own = DatabaseUrl::parse("postgres://kw@db/keys?options=-c%20work_mem%3D8MB").unwrap();
        assert_eq!(
            own.config().get_options().unwrap(),
            "-c work_mem=8MB -c idle_in_transaction_session_timeout=60000"
        );
        let socket = DatabaseUrl::parse("postgresql://kw@%2Frun%2Fpostgresql/keys").unwrap();
        assert_eq!(
            socket.to_string(),
            "postgres://kw@[/run/postgresql]:5432/keys"
        );
        for bad in [
            "sqlite:///var/lib/keyward.db",
            "host=db user=kw password=s3cret dbname=keys",
            "postgres://kw:s3cret@db.internal:port/keys",
            "postgres://kw:s3cret@db.internal/keys?sslmode=require",
            "postgres://kw:s3cret@db.internal",
            "postgres://db.internal/keys",
        ] {
            let e = DatabaseUrl::parse(bad).unwrap_err().to_string();
            assert!(e.starts_with("invalid database URL"), "{bad}: {e}");
            assert!(!e.contains("s3cret"), "{e}");
        }
    }
}
