//! Generates the tonic client and server of upstream's `WorkerService` (asyncmachine-go v0.8.0
//! `examples/benchmark_grpc/proto/worker.proto`, copied in `proto/worker.proto`) without protoc:
//! the messages are hand-written prost structs in `src/grpc.rs`, and tonic-build's `manual`
//! builder writes the service stubs for them with tonic-prost's codec.

fn main() {
    let codec = "tonic_prost::ProstCodec";
    let method = |name: &str, route: &str, input: &str, output: &str| {
        tonic_build::manual::Method::builder()
            .name(name)
            .route_name(route)
            .input_type(input)
            .output_type(output)
            .codec_path(codec)
    };
    let service = tonic_build::manual::Service::builder()
        .name("WorkerService")
        .package("proto")
        .method(method("start", "Start", "crate::grpc::pb::Empty", "crate::grpc::pb::Empty").build())
        .method(
            method(
                "call_op",
                "CallOp",
                "crate::grpc::pb::CallOpRequest",
                "crate::grpc::pb::CallOpResponse",
            )
            .build(),
        )
        .method(
            method(
                "subscribe",
                "Subscribe",
                "crate::grpc::pb::Empty",
                "crate::grpc::pb::Empty",
            )
            .server_streaming()
            .build(),
        )
        .method(
            method(
                "get_value",
                "GetValue",
                "crate::grpc::pb::Empty",
                "crate::grpc::pb::GetValueResponse",
            )
            .build(),
        )
        .build();
    tonic_build::manual::Builder::new().compile(&[service]);
    println!("cargo:rerun-if-changed=build.rs");
}
