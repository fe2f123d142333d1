"""The pivot's canonical rendering: what chains hash and what LM Studio is sent."""

from lmsd.protocol.pivot import (
    FunctionCall,
    FunctionCallOutput,
    Image,
    Message,
    Text,
    dumps,
    turn_json,
)

PNG = Image("data:image/png;base64,AAAA")


def test_a_turn_renders_to_responses_items_in_order():
    turn = (Message("assistant", (Text("let me look"),)),
            FunctionCall("call_1", "Read", '{"path":"a"}'))
    assert turn_json(turn) == [
        {"type": "message", "role": "assistant",
         "content": [{"type": "output_text", "text": "let me look"}]},
        {"type": "function_call", "call_id": "call_1", "name": "Read",
         "arguments": '{"path":"a"}'},
    ]


def test_tool_images_follow_the_turn_in_one_user_message():
    turn = (FunctionCallOutput("c1", "[image 1: image/png, attached]", (PNG,)),
            FunctionCallOutput("c2", "two", (PNG, PNG)),
            Message("user", (Text("and?"),)))
    items = turn_json(turn)
    assert [i["type"] for i in items] == ["function_call_output", "function_call_output",
                                          "message", "message"]
    assert "images" not in items[0] and items[0]["output"].startswith("[image 1")
    assert items[-1] == {"type": "message", "role": "user", "content": [
        {"type": "input_image", "image_url": PNG.url, "detail": "auto"}] * 3}


def test_rendering_is_deterministic_and_the_encoder_compact():
    turn = (Message("user", (Text("héllo"), PNG)),)
    assert dumps(turn_json(turn)) == dumps(turn_json(turn))
    assert dumps({"a": "é", "b": [1, 2]}) == '{"a":"é","b":[1,2]}'
