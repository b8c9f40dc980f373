import XCTest
final class LigandNumericsTestsPlaceholder: XCTestCase { func testNothing() {} }
