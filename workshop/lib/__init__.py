"""The platform's small library: JSON bodies (`jsonbody`), file streams (`streaming`), body
limits (`limits`), file helpers (`files`) and private files (`private_files`). Every app may
import it; it imports no app (tests/test_structure.py holds it to that)."""
