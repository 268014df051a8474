import CModbus
import Foundation

/// One libmodbus context: a serial line (RTU) or a TCP connection.
///
/// Not thread-safe, like `modbus_t` itself: only its bus actor touches it, on the bus's own queue.
final class ModbusConnection: @unchecked Sendable {
    /// How a failed request failed; decides between retrying, flushing and reconnecting.
    enum Failure: Error {
        case timeout
        case corrupted(String)
        case exception(code: Int32, String)
        case link(String)
    }

    private let context: OpaquePointer
    private let isSerial: Bool
    /// Where the bus is, for messages: the port path or host:port.
    let endpoint: String

    init(transport: BusConfig.Transport, responseTimeout: Duration) throws(GatewayError) {
        var created: OpaquePointer?
        switch transport {
        case .modbusRTU(let serial):
            let parity: CChar = switch serial.parity {
            case .none: CChar(UInt8(ascii: "N"))
            case .even: CChar(UInt8(ascii: "E"))
            case .odd: CChar(UInt8(ascii: "O"))
            }
            created = modbus_new_rtu(serial.port, Int32(serial.baud), parity, Int32(serial.dataBits),
                                     Int32(serial.stopBits))
            endpoint = serial.port
            isSerial = true
        case .modbusTCP(let host, let port):
            created = modbus_new_tcp_pi(host, String(port))
            endpoint = "\(host):\(port)"
            isSerial = false
        case .serial(let serial):
            throw GatewayError(.portUnavailable, "\(serial.port) is configured as a raw serial line, not Modbus")
        }
        guard let created else {
            throw GatewayError(.portUnavailable, "cannot set up \(endpoint): \(Self.errorText())")
        }
        context = created
        let microseconds = max(1, Int(responseTimeout.components.seconds) * 1_000_000
            + Int(responseTimeout.components.attoseconds / 1_000_000_000_000))
        modbus_set_response_timeout(context, UInt32(microseconds / 1_000_000), UInt32(microseconds % 1_000_000))
        modbus_set_byte_timeout(context, 0, 100_000)
        modbus_set_error_recovery(context, MODBUS_ERROR_RECOVERY_NONE)
    }

    deinit {
        modbus_close(context)
        modbus_free(context)
    }

    /// Opens the port or connection.
    func connect() throws(GatewayError) {
        if isSerial, !FileManager.default.fileExists(atPath: endpoint) {
            throw GatewayError(.portUnavailable, "cannot open \(endpoint): no such device")
        }
        guard modbus_connect(context) == 0 else {
            throw GatewayError(.portUnavailable, "cannot open \(endpoint): \(Self.errorText())")
        }
    }

    /// Reads holding registers (function 03).
    func readHoldingRegisters(unit: Int, start: Int, count: Int) throws(Failure) -> [UInt16] {
        modbus_set_slave(context, Int32(unit))
        var registers = [UInt16](repeating: 0, count: count)
        let read = registers.withUnsafeMutableBufferPointer {
            modbus_read_registers(context, Int32(start), Int32(count), $0.baseAddress)
        }
        guard read == count else { throw Self.failure() }
        return registers
    }

    /// Writes one holding register (function 06).
    func writeRegister(unit: Int, address: Int, value: UInt16) throws(Failure) {
        modbus_set_slave(context, Int32(unit))
        guard modbus_write_register(context, Int32(address), value) == 1 else { throw Self.failure() }
    }

    /// Writes consecutive holding registers (function 16).
    func writeRegisters(unit: Int, start: Int, values: [UInt16]) throws(Failure) {
        modbus_set_slave(context, Int32(unit))
        let written = values.withUnsafeBufferPointer {
            modbus_write_registers(context, Int32(start), Int32(values.count), $0.baseAddress)
        }
        guard written == values.count else { throw Self.failure() }
    }

    /// Drops whatever the line still holds after a timeout or a corrupted frame.
    func flush() {
        modbus_flush(context)
    }

    /// Classifies the failure of the call just made; errno must be read before anything else runs.
    private static func failure() -> Failure {
        let code = cmodbus_errno()
        let text = String(cString: modbus_strerror(code))
        switch code {
        case ETIMEDOUT: return .timeout
        case CModbusErrorBadCRC, CModbusErrorBadData, CModbusErrorBadSlave, CModbusErrorTooMuchData,
            CModbusErrorBadException, CModbusErrorUnknownException:
            return .corrupted(text)
        case CModbusErrorIllegalFunction...CModbusErrorGatewayTarget:
            return .exception(code: code - CModbusErrorIllegalFunction + 1, text)
        default: return .link(text)
        }
    }

    private static func errorText() -> String {
        String(cString: modbus_strerror(cmodbus_errno()))
    }
}
