import CSerialPort
import Foundation

/// A serial port the system offers, as a technician needs to tell one USB adapter from another.
public struct SerialPortInfo: Sendable, Equatable, Codable {
    /// The device path, e.g. `/dev/ttyUSB0`.
    public var path: String
    /// `usb`, `native` or `bluetooth`.
    public var transport: String
    /// The system's description of the port.
    public var description: String
    /// USB vendor and product ids as four hex digits each (`1a86:7523` is a CH340 adapter).
    public var usbId: String?
    public var manufacturer: String?
    public var product: String?
    /// The adapter's serial number, which tells two identical adapters apart.
    public var serialNumber: String?
    /// The name udev keeps for it under `/dev/serial/by-id/` (from the adapter's own ids and serial number): the same
    /// when the adapter comes back as another `ttyUSB` after a re-plug or a reboot, where its path may not.
    public var stableLink: String?
}

/// Lists serial ports through libserialport (enumeration only: it never opens them).
public enum SerialPortCatalog {
    /// The ports present now; empty when there are none or the list cannot be read.
    public static func list() -> [SerialPortInfo] {
        var list: UnsafeMutablePointer<OpaquePointer?>?
        guard sp_list_ports(&list) == SP_OK, let list else { return [] }
        defer { sp_free_port_list(list) }
        var ports: [SerialPortInfo] = []
        let links = stableLinks()
        var index = 0
        while let port = list[index] {
            index += 1
            let transport = sp_get_port_transport(port)
            var info = SerialPortInfo(
                path: text(sp_get_port_name(port)) ?? "?",
                transport: transport == SP_TRANSPORT_USB ? "usb" : transport == SP_TRANSPORT_BLUETOOTH ? "bluetooth" : "native",
                description: text(sp_get_port_description(port)) ?? "")
            if transport == SP_TRANSPORT_USB {
                var vendor: Int32 = 0
                var product: Int32 = 0
                if sp_get_port_usb_vid_pid(port, &vendor, &product) == SP_OK {
                    info.usbId = hex4(vendor) + ":" + hex4(product)
                }
                info.manufacturer = text(sp_get_port_usb_manufacturer(port))
                info.product = text(sp_get_port_usb_product(port))
                info.serialNumber = text(sp_get_port_usb_serial(port))
            }
            info.stableLink = links[info.path]
            ports.append(info)
        }
        return ports.sorted { $0.path < $1.path }
    }

    /// The links in `folder`, by the device each leads to (the first in name order when several do).
    static func stableLinks(in folder: String = "/dev/serial/by-id") -> [String: String] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: folder) else { return [:] }
        var links: [String: String] = [:]
        for name in names.sorted() {
            let link = folder + "/" + name
            let target = URL(fileURLWithPath: link).resolvingSymlinksInPath().path
            if target != link, links[target] == nil { links[target] = link }
        }
        return links
    }

    private static func text(_ pointer: UnsafeMutablePointer<CChar>?) -> String? {
        pointer.map { String(cString: $0) }
    }

    private static func hex4(_ value: Int32) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
    }
}
