import XCTest
import CharRNN
@testable import CharRNNDistributed
#if canImport(Glibc)
@preconcurrency import Glibc
#endif

final class ZeroMQTests: XCTestCase {
    private let wait = 10_000

    /// A ROUTER bound to `endpoint` and a DEALER with routing id "w1" connected to it.
    private func pair(_ endpoint: String) throws -> (router: ZMQSocket, dealer: ZMQSocket) {
        let context = try ZMQContext()
        let router = try ZMQSocket(context, .router)
        try router.setOption(.linger, 0)
        try router.setOption(.routerMandatory, 1)
        try router.bind(endpoint)
        let dealer = try ZMQSocket(context, .dealer)
        try dealer.setOption(.linger, 0)
        try dealer.setOption(.routingID, Array("w1".utf8))
        try dealer.connect(try router.lastEndpoint())
        return (router, dealer)
    }

    private func roundTrip(_ router: ZMQSocket, _ dealer: ZMQSocket) throws {
        try dealer.send([.bytes(Array("hello".utf8)), .bytes([])])
        let request = try XCTUnwrap(try router.receiveMultipart(timeoutMs: wait))
        XCTAssertEqual(request.map(\.array), [Array("w1".utf8), Array("hello".utf8), []])
        try router.send([.bytes(request[0].array), .bytes(Array("welcome".utf8))], dontWait: true)
        let reply = try XCTUnwrap(try dealer.receiveMultipart(timeoutMs: wait))
        XCTAssertEqual(reply.map(\.array), [Array("welcome".utf8)])
    }

    func testTCPRoundTripOnAnEphemeralPort() throws {
        let (router, dealer) = try pair("tcp://127.0.0.1:*")
        let endpoint = try router.lastEndpoint()
        XCTAssert(endpoint.hasPrefix("tcp://127.0.0.1:") && !endpoint.hasSuffix(":*"), endpoint)
        try roundTrip(router, dealer)
    }

    func testIPCRoundTrip() throws {
        var template = Array("/tmp/charrnn-zmq-XXXXXX".utf8CString)
        let directory = String(cString: try XCTUnwrap(mkdtemp(&template)))
        let path = directory + "/coordinator.sock"
        defer {
            unlink(path)
            rmdir(directory)
        }
        let (router, dealer) = try pair("ipc://" + path)
        XCTAssertEqual(try router.lastEndpoint(), "ipc://" + path)
        try roundTrip(router, dealer)
    }

    /// 16 MiB, the size of a full model's weights, without copying on send; the buffer stays retained until
    /// libzmq is done with it and is released afterwards.
    func testZeroCopyFrameOf16MiB() throws {
        let (router, dealer) = try pair("tcp://127.0.0.1:*")
        var weights: FloatBuffer? = FloatBuffer(count: 4 << 20)
        for i in stride(from: 0, to: weights!.count, by: 997) { weights![i] = Float(i) }
        let expected = weights!.copy()
        weak let sent = weights
        try dealer.send([.bytes([7]), .zeroCopy(UnsafeRawBufferPointer(weights!.buffer), owner: weights!)])
        weights = nil

        let frames = try XCTUnwrap(try router.receiveMultipart(timeoutMs: wait))
        XCTAssertEqual(frames.map(\.count), [2, 1, 16 << 20])
        XCTAssertEqual(memcmp(try XCTUnwrap(frames[2].bytes.baseAddress), expected.base, 16 << 20), 0)

        let deadline = ContinuousClock.now + .seconds(10)
        while sent != nil && ContinuousClock.now < deadline { usleep(5_000) }
        XCTAssertNil(sent, "libzmq never released the zero-copy buffer")
    }

    func testReceiveTimesOutWithNil() throws {
        let (_, dealer) = try pair("tcp://127.0.0.1:*")
        let start = ContinuousClock.now
        XCTAssertNil(try dealer.receiveMultipart(timeoutMs: 50))
        XCTAssertGreaterThanOrEqual(ContinuousClock.now - start, .milliseconds(45))
        XCTAssertEqual(try ZMQSocket.poll([(dealer, .readable)], timeoutMs: 0), [[]])
    }

    func testPollReportsWhichSocketIsReadable() throws {
        let (router, dealer) = try pair("tcp://127.0.0.1:*")
        try dealer.send([.bytes([1])])
        let events = try ZMQSocket.poll([(dealer, .readable), (router, .readable)], timeoutMs: wait)
        XCTAssertEqual(events, [[], .readable])
    }

    func testBindingABoundPortSaysAddressInUse() throws {
        let (router, _) = try pair("tcp://127.0.0.1:*")
        let endpoint = try router.lastEndpoint()
        let second = try ZMQSocket(try ZMQContext(), .router)
        XCTAssertThrowsError(try second.bind(endpoint)) { error in
            let error = error as? ZMQError
            XCTAssertEqual(error?.code, EADDRINUSE)
            XCTAssertEqual(error?.description, "bind \(endpoint): Address already in use")
        }
    }

    func testMandatoryRouterRefusesUnknownPeers() throws {
        let (router, _) = try pair("tcp://127.0.0.1:*")
        XCTAssertThrowsError(try router.send([.bytes(Array("nobody".utf8)), .bytes([1])], dontWait: true)) { error in
            XCTAssertEqual((error as? ZMQError)?.code, EHOSTUNREACH)
        }
    }

    func testClosedSocketFailsCleanly() throws {
        let (_, dealer) = try pair("tcp://127.0.0.1:*")
        dealer.close()
        XCTAssertThrowsError(try dealer.send([.bytes([1])])) { error in
            XCTAssertEqual((error as? ZMQError)?.code, ENOTSOCK)
        }
    }

    func testOptionValuesOutOfRangeAreRefused() throws {
        let (_, dealer) = try pair("tcp://127.0.0.1:*")
        XCTAssertThrowsError(try dealer.setOption(.linger, Int(Int32.max) + 1))
        XCTAssertNoThrow(try dealer.setOption(.maxMessageSize, 1 << 40))
    }
}
