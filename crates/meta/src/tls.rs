//! TLS for every outgoing connection: rustls on aws-lc (the AWS SDK's crypto library, so
//! the binaries link one), with Mozilla's root certificates compiled in, so nothing is
//! read from disk or parsed at init.

use std::sync::{Arc, OnceLock};

/// Where TLS connections find their root certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Roots {
    /// Mozilla's roots compiled into the binary: nothing to read at init.
    Compiled,
    /// The operating system's store (developer machines, where a company proxy's CA
    /// may have been added).
    Native,
}

impl Roots {
    /// Compiled roots in Lambda, the system store elsewhere.
    pub fn for_environment() -> Roots {
        if crate::config::in_lambda() {
            Roots::Compiled
        } else {
            Roots::Native
        }
    }
}

/// The rustls configuration every client shares (reqwest's, and the AWS SDK's in Lambda):
/// aws-lc, Mozilla's roots in their parsed form, so building it costs nothing measurable.
pub fn client_config() -> rustls::ClientConfig {
    static CONFIG: OnceLock<rustls::ClientConfig> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::aws_lc_rs::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            // aws-lc's default provider carries TLS 1.2 and 1.3 suites by construction.
            .expect("aws-lc supports the default TLS versions")
            .with_root_certificates(roots)
            // No ALPN: both clients speak HTTP/1.1 only, the default without it.
            .with_no_client_auth()
        })
        .clone()
}

/// A reqwest client builder on skyhost's TLS stack. Every reqwest client is built from
/// this: reqwest is linked without a default crypto provider.
pub fn http_client() -> reqwest::ClientBuilder {
    reqwest::Client::builder().use_preconfigured_tls(client_config())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiled_roots_are_mozillas_set() {
        assert!(webpki_roots::TLS_SERVER_ROOTS.len() > 100);
    }

    #[test]
    fn reqwest_clients_build_without_a_default_provider() {
        // reqwest would panic here ("No provider set") if it built its own config.
        assert!(http_client().build().is_ok());
        assert!(client_config().alpn_protocols.is_empty());
    }
}
