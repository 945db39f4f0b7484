//! The TLS configuration of a fetcher's default sessions, and when it pays for the system's root
//! certificates.

use std::fmt;
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// The TLS configuration every default session of one fetcher shares.
///
/// Each client would otherwise build its own, and a fetcher with 256 workers would load the
/// system's roots 256 times. It is built on the first session that needs it and cloned (a
/// handful of reference counts) into every later one.
#[derive(Default)]
pub(crate) struct SharedTls(OnceLock<Result<rustls::ClientConfig, String>>);

impl SharedTls {
    pub(crate) fn config(&self) -> Result<rustls::ClientConfig, String> {
        self.0.get_or_init(build_config).clone()
    }
}

impl fmt::Debug for SharedTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.0.get() {
            None => "not built yet",
            Some(Ok(_)) => "built",
            Some(Err(_)) => "failed",
        };
        f.debug_tuple("SharedTls").field(&state).finish()
    }
}

/// TLS sessions kept for resumption, across a fetcher's workers.
const RESUMABLE_SESSIONS: usize = 4_096;

fn build_config() -> Result<rustls::ClientConfig, String> {
    let provider = CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
    let verifier = SystemRootsOnFirstUse {
        provider: Arc::clone(&provider),
        verifier: OnceLock::new(),
    };
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("could not configure TLS: {error}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    // reqwest leaves ALPN alone on a preconfigured backend; offer what the client speaks.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // Every session shares this store: a host that a second worker takes over resumes the
    // first one's TLS session instead of a full handshake. rustls keeps 256 by default; a
    // crawl meets thousands of hosts (a few hundred bytes each).
    config.resumption = rustls::client::Resumption::in_memory_sessions(RESUMABLE_SESSIONS);
    Ok(config)
}

/// The platform's verifier, made on the first TLS handshake instead of with the configuration.
///
/// Making it loads and parses every system root certificate (about 19 million instructions,
/// several milliseconds): a fetcher that only ever speaks plain HTTP should not pay for that,
/// and one that speaks TLS pays it once, on its first handshake. If the roots cannot be loaded,
/// each handshake fails with the reason, instead of every request, plain HTTP included.
#[derive(Debug)]
struct SystemRootsOnFirstUse {
    provider: Arc<CryptoProvider>,
    verifier: OnceLock<Result<rustls_platform_verifier::Verifier, String>>,
}

impl SystemRootsOnFirstUse {
    fn verifier(&self) -> Result<&rustls_platform_verifier::Verifier, rustls::Error> {
        self.verifier
            .get_or_init(|| {
                rustls_platform_verifier::Verifier::new(Arc::clone(&self.provider))
                    .map_err(|error| format!("could not load the system's TLS roots: {error}"))
            })
            .as_ref()
            .map_err(|reason| rustls::Error::General(reason.clone()))
    }
}

impl ServerCertVerifier for SystemRootsOnFirstUse {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.verifier()?.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verifier()?.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verifier()?.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        // Asked for every ClientHello, before any certificate arrives: the provider knows
        // its algorithms without the roots.
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
