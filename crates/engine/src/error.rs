//! The umbrella error for callers of the engine: every module error converts into it with
//! `?`, and its message is the module error's (each names the path, digest or reference).

use crate::auth::AuthError;
use crate::content::ContentError;
use crate::digest::DigestError;
use crate::fsutil::FsError;
use crate::images::ImageError;
use crate::layers::LayerError;
use crate::layout::LayoutError;
use crate::prune::PruneError;
use crate::reference::ReferenceError;
use crate::registry::RegistryError;
use crate::rootfs::RootfsError;
use crate::unpack::UnpackError;

/// Any engine error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A digest string was refused.
    #[error(transparent)]
    Digest(#[from] DigestError),
    /// A filesystem helper failed.
    #[error(transparent)]
    Fs(#[from] FsError),
    /// The state root could not be opened.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// The content store failed.
    #[error(transparent)]
    Content(#[from] ContentError),
    /// The layer store failed.
    #[error(transparent)]
    Layer(#[from] LayerError),
    /// The image store failed.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// A layer could not be unpacked.
    #[error(transparent)]
    Unpack(#[from] UnpackError),
    /// The registry refused or failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// An image reference is invalid.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// Credentials could not be read.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// A container rootfs could not be mounted or unmounted.
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    /// Removing images or collecting garbage failed.
    #[error(transparent)]
    Prune(#[from] PruneError),
    /// Data that contradicts itself (an image whose manifest and config disagree, …).
    #[error("{0}")]
    Invalid(String),
    /// A blocking task could not be joined.
    #[error("internal error: {0}")]
    Internal(String),
}

/// `Result` with the engine's umbrella [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;

    #[test]
    fn module_errors_convert_and_keep_their_message() {
        fn content() -> Result<()> {
            Err(ContentError::NotFound {
                digest: Digest::of_bytes(b""),
            })?
        }
        let err = content().unwrap_err();
        assert!(matches!(err, Error::Content(ContentError::NotFound { .. })));
        assert_eq!(
            err.to_string(),
            format!(
                "blob {} not found in the content store",
                Digest::of_bytes(b"")
            )
        );
        fn digest() -> Result<Digest> {
            Ok(Digest::parse("md5:x")?)
        }
        assert!(matches!(digest(), Err(Error::Digest(_))));
    }
}
