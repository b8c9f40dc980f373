import XCTest
final class LigandFormatsTestsPlaceholder: XCTestCase { func testNothing() {} }
