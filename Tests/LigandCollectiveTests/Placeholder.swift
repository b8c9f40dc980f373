import XCTest
final class LigandCollectiveTestsPlaceholder: XCTestCase { func testNothing() {} }
