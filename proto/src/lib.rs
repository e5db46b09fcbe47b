//! learnhub's gRPC contracts: generated messages, clients and servers for every service.

pub mod common {
    pub mod v1 {
        tonic::include_proto!("learnhub.common.v1");
    }
}

pub mod catalog {
    pub mod v1 {
        tonic::include_proto!("learnhub.catalog.v1");
    }
}

pub mod enrollment {
    pub mod v1 {
        tonic::include_proto!("learnhub.enrollment.v1");
    }
}

pub mod cache {
    pub mod v1 {
        tonic::include_proto!("learnhub.cache.v1");
    }
}

pub mod gateway {
    pub mod v1 {
        tonic::include_proto!("learnhub.gateway.v1");
    }
}

pub use prost_types::Timestamp;

/// Every learnhub service's descriptors, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/learnhub_descriptor.bin"));
