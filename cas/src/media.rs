//! Media types of the OCI image spec and Docker's schema2, and what each one is.

/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI layer, uncompressed.
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
/// OCI layer, gzip.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// OCI layer, zstd.
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// Docker manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker schema2 manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker layer (compression sniffed; in practice gzip).
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Docker layer, uncompressed (what `docker save` archives hold).
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
/// Docker foreign (non-distributable) layer.
pub const DOCKER_FOREIGN_LAYER: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
/// Annotation naming an image in an OCI layout's index.json.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// containerd's annotation carrying the full image name in exported archives.
pub const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";

/// What a blob of a given media type is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A list of manifests per platform.
    Index,
    /// One image: config plus layers.
    Manifest,
    /// The image config.
    Config,
    /// A filesystem layer (compression is sniffed from the bytes when applied).
    Layer,
    /// Anything else.
    Unknown,
}

/// Classifies a media type.
pub fn kind(media_type: &str) -> Kind {
    match media_type {
        OCI_INDEX | DOCKER_MANIFEST_LIST => Kind::Index,
        OCI_MANIFEST | DOCKER_MANIFEST => Kind::Manifest,
        OCI_CONFIG | DOCKER_CONFIG => Kind::Config,
        m if is_layer(m) => Kind::Layer,
        _ => Kind::Unknown,
    }
}

fn is_layer(m: &str) -> bool {
    matches!(m, DOCKER_LAYER | DOCKER_LAYER_GZIP | DOCKER_FOREIGN_LAYER)
        || m.starts_with("application/vnd.oci.image.layer.v1.tar")
        || m.starts_with("application/vnd.oci.image.layer.nondistributable.v1.tar")
}

/// Whether a layer may not be pushed to registries (non-distributable / foreign).
pub fn is_non_distributable(m: &str) -> bool {
    m == DOCKER_FOREIGN_LAYER || m.contains(".nondistributable.")
}

/// The manifest media type a registry should be told for a Docker or OCI index.
pub fn is_docker(m: &str) -> bool {
    m.starts_with("application/vnd.docker.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies() {
        assert_eq!(kind(DOCKER_MANIFEST_LIST), Kind::Index);
        assert_eq!(kind(OCI_MANIFEST), Kind::Manifest);
        assert_eq!(kind(DOCKER_CONFIG), Kind::Config);
        assert_eq!(kind(OCI_LAYER_ZSTD), Kind::Layer);
        assert_eq!(
            kind("application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"),
            Kind::Layer
        );
        assert_eq!(kind("application/x-foo"), Kind::Unknown);
        assert!(is_non_distributable(DOCKER_FOREIGN_LAYER));
    }
}
