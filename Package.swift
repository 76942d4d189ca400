// swift-tools-version: 6.0
import PackageDescription

let package = Package(
    name: "charrnn",
    // macOS 15: the Synchronization module's Atomic (Math/BlockPool.swift).
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "charrnn", targets: ["charrnn"]),
        .library(name: "CharRNN", targets: ["CharRNN"]),
        .library(name: "CharRNNDistributed", targets: ["CharRNNDistributed"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
    ],
    targets: [
        .systemLibrary(name: "COpenBLAS", path: "Sources/COpenBLAS"),
        .systemLibrary(name: "CZeroMQ", path: "Sources/CZeroMQ"),
        // The core: data, model, training, checkpoints, sampling. Knows nothing of sockets.
        // The recurrent products, with U packed once per step (OpenBLAS re-packs it on every call); see its header.
        .target(name: "CPackedProduct"),
        .target(name: "CharRNN", dependencies: ["COpenBLAS", "CPackedProduct"]),
        // Coordinator and workers over ZeroMQ. Knows the core's shard step and step plan, not GRU internals.
        .target(name: "CharRNNDistributed", dependencies: ["CharRNN", "CZeroMQ"]),
        .executableTarget(
            name: "charrnn",
            dependencies: [
                "CharRNN", "CharRNNDistributed", "COpenBLAS",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(name: "CharRNNTests", dependencies: ["CharRNN"]),
        .testTarget(name: "CharRNNDistributedTests", dependencies: ["CharRNNDistributed", "CharRNN"]),
        .testTarget(name: "CLITests", dependencies: ["CharRNN", "CharRNNDistributed"]),
    ]
)
