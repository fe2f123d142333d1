"""The OpenAI Chat Completions codec (any /v1/chat/completions server)."""

# Transitional, until the request half of ``protocol/chat.py`` moves into this package:
# this package shadows that module, so its public names are loaded from its file. Once
# the file is gone this does nothing, and can go too.
import importlib.util as _util
import sys as _sys
from pathlib import Path as _Path

_file = _Path(__file__).parent.parent / "chat.py"
if _file.exists():
    _spec = _util.spec_from_file_location("lmsd.protocol._chat_request", _file)
    assert _spec is not None and _spec.loader is not None
    _module = _util.module_from_spec(_spec)
    _sys.modules[_spec.name] = _module
    _spec.loader.exec_module(_module)
    build_chat_request = _module.build_chat_request
    chat_messages = _module.chat_messages
    merge_user_turns = _module.merge_user_turns
