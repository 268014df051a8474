// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "hall-gateway",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "gatewayd", targets: ["gatewayd"]),
        .library(name: "Protocols", targets: ["Protocols"]),
        .library(name: "DeviceGateway", targets: ["DeviceGateway"]),
        .library(name: "MockDevices", targets: ["MockDevices"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.6.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.6.0"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.0.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.0.0"),
        // The central-store sinks: NIO once for all three (HTTP client, PostgreSQL, TLS).
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.81.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.29.0"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.25.0"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.25.0"),
        // The local API for the queue system and the technician's CLI.
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.0"),
        // /metrics in the Prometheus text format (a registry of the API's own, no global MetricsSystem).
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
    ],
    targets: [
        .systemLibrary(name: "CModbus", pkgConfig: "libmodbus", providers: [.apt(["libmodbus-dev"])]),
        .systemLibrary(name: "CSerialPort", pkgConfig: "libserialport", providers: [.apt(["libserialport-dev"])]),
        .systemLibrary(name: "CMosquitto", pkgConfig: "libmosquitto", providers: [.apt(["libmosquitto-dev"])]),
        .systemLibrary(name: "CSystemClock"),
        // Pure codecs: no I/O, no dependencies.
        .target(name: "Protocols"),
        .target(
            name: "DeviceGateway",
            dependencies: [
                "Protocols", "CModbus", "CSerialPort", "CMosquitto", "CSystemClock",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
            ]
        ),
        // Glibc's Swift module hides posix_openpt and friends; the mock layer needs them for serial lines.
        .target(name: "CPseudoTerminal"),
        // Simulated devices speaking the real wire protocols; used by tests and the demo hall.
        .target(
            name: "MockDevices",
            dependencies: ["Protocols", "CModbus", "CPseudoTerminal", .product(name: "Logging", package: "swift-log")]
        ),
        // The HTTP API: commands from the queue system, device states, events; served by `gatewayd run`.
        .target(
            name: "LocalAPI",
            dependencies: [
                "DeviceGateway",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            // In the executable itself: an installed gatewayd has no resource bundle beside it.
            resources: [.embedInCode("openapi.json")]
        ),
        .executableTarget(
            name: "gatewayd",
            dependencies: [
                "DeviceGateway", "MockDevices", "LocalAPI",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ]
        ),
        // Decode throughput per family: `swift run -c release ProtocolBenchmarks`.
        .executableTarget(name: "ProtocolBenchmarks", dependencies: ["Protocols"]),
        // Outbox ingest and draining into each store: `bench/forwarding.sh`.
        .executableTarget(
            name: "GatewayBenchmarks",
            dependencies: ["DeviceGateway", "MockDevices", .product(name: "Logging", package: "swift-log")]
        ),
        // Fixtures are read from the source tree by path: they are inputs to check, not resources to ship.
        .testTarget(name: "ProtocolTests", dependencies: ["Protocols"], exclude: ["Fixtures"]),
        .testTarget(
            name: "GatewayTests",
            dependencies: [
                "DeviceGateway", "MockDevices", "Protocols", "CModbus", "LocalAPI",
                .product(name: "GRDB", package: "GRDB.swift"), .product(name: "Logging", package: "swift-log"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Hummingbird", package: "hummingbird"),
            ]
        ),
    ]
)

for target in package.targets where target.type != .system && target.name != "CPseudoTerminal" {
    var settings = target.swiftSettings ?? []
    settings.append(contentsOf: [
        .enableUpcomingFeature("ExistentialAny"),
        .enableUpcomingFeature("MemberImportVisibility"),
        .enableUpcomingFeature("InternalImportsByDefault"),
    ])
    target.swiftSettings = settings
}
