import XCTest
final class LigandDataTestsPlaceholder: XCTestCase { func testNothing() {} }
