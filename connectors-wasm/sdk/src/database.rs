//! Databases the host opens for the connector (`agnes:connector@0.2.0` `database`).
//!
//! The connector names a database its `connector.toml` requests:
//!
//! ```toml
//! [[requests.databases]]
//! name = "warehouse"
//! kind = "postgres"
//! ```
//!
//! The operator's grant says where it is, which role logs in and where the host reads the
//! password. [`connect`] returns the wire-protocol stream after the host has connected
//! (address checked like HTTP egress), negotiated TLS and logged in, with the session
//! read-only: the password never enters the connector. Speak the protocol over it with
//! [`crate::postgres`].
//!
//! ```ignore
//! use agnes_connector_sdk::database;
//! let stream = database::connect("warehouse")?; // authenticated by the host
//! let mut pg = agnes_connector_sdk::postgres::Client::new(stream);
//! ```

use std::io::{Read, Write};

use crate::Error;

/// An authenticated connection: a blocking byte stream. Closed when dropped.
pub struct DbStream {
    #[cfg(target_arch = "wasm32")]
    conn: crate::bindings::agnes::connector::database::Connection,
    name: String,
}

impl std::fmt::Debug for DbStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DbStream({})", self.name)
    }
}

/// Opens the granted database `name`.
pub fn connect(name: &str) -> Result<DbStream, Error> {
    #[cfg(target_arch = "wasm32")]
    {
        let conn = crate::bindings::agnes::connector::database::connect(name)?;
        Ok(DbStream {
            conn,
            name: name.to_string(),
        })
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        Err(Error::Io(format!(
            "database `{name}`: not built for wasm32, there is no host to open it"
        )))
    }
}

impl DbStream {
    /// The database's name in the grant.
    pub fn name(&self) -> &str {
        &self.name
    }
}

fn io_error(e: Error) -> std::io::Error {
    let kind = match e {
        Error::AccessDenied(_) => std::io::ErrorKind::PermissionDenied,
        _ => std::io::ErrorKind::Other,
    };
    std::io::Error::new(kind, e.to_string())
}

impl Read for DbStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        #[cfg(target_arch = "wasm32")]
        {
            let max = buf.len().min(u32::MAX as usize) as u32;
            let bytes = self.conn.read(max).map_err(|e| io_error(e.into()))?;
            let n = bytes.len().min(buf.len());
            buf[..n].copy_from_slice(&bytes[..n]);
            Ok(n)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            let _ = buf;
            Err(io_error(Error::Io("no host".into())))
        }
    }
}

impl Write for DbStream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        #[cfg(target_arch = "wasm32")]
        {
            self.conn.write(buf).map_err(|e| io_error(e.into()))?;
            Ok(buf.len())
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            let _ = buf;
            Err(io_error(Error::Io("no host".into())))
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
