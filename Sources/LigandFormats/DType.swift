/// An element type of a safetensors tensor, spelled as in the file's header.
public enum DType: String, CaseIterable, Sendable, Hashable, CustomStringConvertible {
    case f64 = "F64"
    case f32 = "F32"
    case f16 = "F16"
    case bf16 = "BF16"
    case f8e5m2 = "F8_E5M2"
    case f8e4m3 = "F8_E4M3"
    case i64 = "I64"
    case i32 = "I32"
    case i16 = "I16"
    case i8 = "I8"
    case u64 = "U64"
    case u32 = "U32"
    case u16 = "U16"
    case u8 = "U8"
    case bool = "BOOL"

    /// Bytes per element.
    public var byteSize: Int {
        switch self {
        case .f64, .i64, .u64: return 8
        case .f32, .i32, .u32: return 4
        case .f16, .bf16, .i16, .u16: return 2
        case .f8e5m2, .f8e4m3, .i8, .u8, .bool: return 1
        }
    }

    /// Whether `SafeTensorsFile.floats` / `doubles` can convert this type.
    public var isConvertibleFloat: Bool {
        switch self {
        case .f64, .f32, .f16, .bf16: return true
        default: return false
        }
    }

    /// Whether `SafeTensorsFile.int64s` can convert this type.
    public var isConvertibleInteger: Bool {
        switch self {
        case .i64, .i32, .i16, .i8, .u64, .u32, .u16, .u8, .bool: return true
        default: return false
        }
    }

    public var description: String { rawValue }
}

/// Bit-level conversions for the 16-bit float formats, done by hand because Swift's
/// Float16 is unavailable on some hosts and BFloat16 has no standard library type.
public enum HalfPrecision {
    /// IEEE 754 binary16 bits to Float (exact).
    public static func float(fromF16 h: UInt16) -> Float {
        let negative = (h & 0x8000) != 0
        let exp = UInt32((h >> 10) & 0x1F)
        let mant = UInt32(h & 0x3FF)
        let magnitude: Float
        if exp == 0 {
            magnitude = Float(mant) * Float(bitPattern: 0x3380_0000)  // mant × 2^-24
        } else if exp == 0x1F {
            magnitude = Float(bitPattern: 0x7F80_0000 | (mant << 13))
        } else {
            magnitude = Float(bitPattern: ((exp + 112) << 23) | (mant << 13))
        }
        return negative ? -magnitude : magnitude
    }

    /// Float to binary16 bits, rounding to nearest even; too-large values become infinity.
    public static func f16Bits(from f: Float) -> UInt16 {
        let x = f.bitPattern
        let sign = UInt16((x >> 16) & 0x8000)
        let exp = Int((x >> 23) & 0xFF)
        var mant = x & 0x7F_FFFF
        if exp == 0xFF { return sign | 0x7C00 | (mant != 0 ? 0x200 : 0) }
        let e = exp - 127 + 15
        if e >= 0x1F { return sign | 0x7C00 }
        if e <= 0 {
            if e < -10 { return sign }
            mant |= 0x80_0000
            let shift = UInt32(14 - e)
            var r = mant >> shift
            let rem = mant & ((UInt32(1) << shift) - 1)
            let halfway = UInt32(1) << (shift - 1)
            if rem > halfway || (rem == halfway && (r & 1) == 1) { r += 1 }
            return sign | UInt16(r)
        }
        var r = (UInt32(e) << 10) | (mant >> 13)
        let rem = mant & 0x1FFF
        if rem > 0x1000 || (rem == 0x1000 && (r & 1) == 1) { r += 1 }
        return sign | UInt16(r)
    }

    /// bfloat16 bits to Float (exact).
    public static func float(fromBF16 b: UInt16) -> Float {
        Float(bitPattern: UInt32(b) << 16)
    }

    /// Float to bfloat16 bits, rounding to nearest even; too-large values become infinity.
    public static func bf16Bits(from f: Float) -> UInt16 {
        let x = f.bitPattern
        if f.isNaN { return UInt16(x >> 16) | 0x0040 }
        return UInt16((x &+ 0x7FFF &+ ((x >> 16) & 1)) >> 16)
    }
}
