//! TLS to PostgreSQL through rustls (`sslmode`).
//!
//! | `sslmode` | what happens |
//! |-----------|--------------|
//! | `disable` (the default) | no TLS |
//! | `prefer`, `allow` | TLS when the server offers it, plain otherwise; when TLS is used the chain is verified |
//! | `require`, `verify-ca` | TLS, the certificate chain verified against the system's roots and `ca_cert`; not the host name |
//! | `verify-full` | TLS, the chain and the host name verified |
//!
//! libpq verifies nothing under `prefer` and `require`; cachette always
//! verifies the chain, so that TLS never means "encrypted to anyone".

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

use super::NAME;
use crate::backends::common::{tls_client_config, tls_config_builder, tls_roots};
use crate::error::{Error, Result};

/// How the connection is encrypted (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SslMode {
    /// No TLS.
    #[default]
    Disable,
    /// TLS when the server offers it (the chain verified), plain otherwise.
    Prefer,
    /// TLS, the certificate chain verified, not the host name.
    Require,
    /// TLS, the chain and the host name verified.
    VerifyFull,
}

impl std::str::FromStr for SslMode {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        Ok(match text {
            "disable" => SslMode::Disable,
            "allow" | "prefer" => SslMode::Prefer,
            "require" | "verify-ca" => SslMode::Require,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(Error::config(
                    NAME,
                    format!(
                        "`{other}` is not disable, allow, prefer, require, verify-ca or verify-full"
                    ),
                ));
            }
        })
    }
}

/// The rustls settings of `mode` (not `Disable`).
pub(super) fn client_config(
    mode: SslMode,
    extra_roots: &[Vec<u8>],
) -> Result<rustls::ClientConfig> {
    if mode == SslMode::VerifyFull {
        return tls_client_config(NAME, extra_roots);
    }
    let roots = Arc::new(tls_roots(NAME, extra_roots)?);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiServerVerifier::builder_with_provider(roots, provider)
        .build()
        .map_err(|err| Error::config(NAME, format!("TLS: {err}")))?;
    Ok(tls_config_builder(NAME)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(ChainOnly(verifier)))
        .with_no_client_auth())
}

/// Verifies the certificate chain (and the handshake's signatures) as
/// rustls does, but accepts a certificate made out to another name.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        // rustls checks the chain first; the name comes last.
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            outcome => outcome,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
