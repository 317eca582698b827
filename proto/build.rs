//! Compiles proto/brook/v1/*.proto with protox (pure Rust: no protoc install needed) and
//! generates prost messages and tonic services; `bytes` fields become `bytes::Bytes`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["brook/v1/broker.proto", "brook/v1/controller.proto"];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let fds = protox::compile(protos, ["."])?;
    tonic_prost_build::configure().bytes(".").compile_fds(fds)?;
    Ok(())
}
