"""Sum the JUnit reports of every nox session into one closing line: 'N passed, N failed, N skipped'."""

import pathlib
import sys
import xml.etree.ElementTree as ET

reports = sorted(pathlib.Path(sys.argv[1]).glob("*.xml"))
if not reports:
    print("no test reports were written")
    sys.exit(1)
passed = failed = skipped = 0
for report in reports:
    for suite in ET.parse(report).getroot().iter("testsuite"):
        tests, errors = int(suite.get("tests", 0)), int(suite.get("errors", 0))
        fails, skips = int(suite.get("failures", 0)), int(suite.get("skipped", 0))
        print(f"{report.stem}: {tests - fails - errors - skips} passed, {fails + errors} failed, {skips} skipped")
        passed += tests - fails - errors - skips
        failed += fails + errors
        skipped += skips
print(f"{passed} passed, {failed} failed, {skipped} skipped")
sys.exit(1 if failed else 0)
