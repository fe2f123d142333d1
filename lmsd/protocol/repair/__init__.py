"""Tool calls that a local model printed as text, made real calls (issue 13).

A pure filter on the pivot event stream; see :mod:`.filter`. Formats, one module each:
``qwen_xml``, ``hermes_json``, ``glm``, ``harmony``, ``lfm_pythonic``, ``tool_request``,
``invoke_xml``, ``bare_json``.
"""

from .filter import LIMIT, ToolCallRepair

__all__ = ["LIMIT", "ToolCallRepair"]
