"""Schemas, prompts and known answers of the structured-output benchmarks.

Ten JSON Schemas of the kinds clients send (nested objects, arrays with bounds, enums, bounded
numbers, string patterns and lengths, required and optional fields, a pydantic-style schema with
``$defs`` / ``$ref`` and a nullable field), three user prompts each, one valid instance each (the
checker's known answer) and a way to break it. Every size is bounded so that a constrained output
ends by itself. Only keywords a grammar engine can enforce are used (no ``uniqueItems``, no
``format``), so a 400 for one of these schemas is a gap in the server, not in the data.
"""
from __future__ import annotations

import copy
import json

__all__ = ["SCHEMAS", "PROMPTS", "EXAMPLES", "SYSTEM", "messages", "broken"]

_STR = {"type": "string", "minLength": 1, "maxLength": 40}

SCHEMAS: dict[str, dict] = {
    "person": {
        "type": "object",
        "properties": {"name": _STR, "age": {"type": "integer", "minimum": 0, "maximum": 120},
                       "email": {"type": "string", "maxLength": 60}},
        "required": ["name", "age"], "additionalProperties": False,
    },
    "address": {
        "type": "object",
        "properties": {"street": _STR, "city": _STR, "zip": {"type": "string", "pattern": "^[0-9]{5}$"},
                       "country": {"type": "string", "enum": ["US", "DE", "FR", "ES", "IT"]}},
        "required": ["street", "city", "zip", "country"], "additionalProperties": False,
    },
    "order": {
        "type": "object",
        "properties": {
            "order_id": {"type": "integer", "minimum": 1},
            "items": {"type": "array", "minItems": 1, "maxItems": 4, "items": {
                "type": "object",
                "properties": {"product": _STR, "quantity": {"type": "integer", "minimum": 1, "maximum": 99},
                               "price": {"type": "number", "exclusiveMinimum": 0, "maximum": 10000}},
                "required": ["product", "quantity", "price"], "additionalProperties": False}},
            "express": {"type": "boolean"},
        },
        "required": ["order_id", "items"], "additionalProperties": False,
    },
    "event": {
        "type": "object",
        "properties": {"title": _STR, "date": {"type": "string", "pattern": "^20[0-9]{2}-[01][0-9]-[0-3][0-9]$"},
                       "attendees": {"type": "array", "items": _STR, "maxItems": 5},
                       "online": {"type": "boolean"}},
        "required": ["title", "date", "online"], "additionalProperties": False,
    },
    "review": {
        "type": "object",
        "properties": {"rating": {"type": "integer", "minimum": 1, "maximum": 5},
                       "sentiment": {"type": "string", "enum": ["positive", "neutral", "negative"]},
                       "summary": {"type": "string", "minLength": 1, "maxLength": 120}},
        "required": ["rating", "sentiment", "summary"], "additionalProperties": False,
    },
    "recipe": {
        "type": "object",
        "properties": {
            "name": _STR, "servings": {"type": "integer", "minimum": 1, "maximum": 12},
            "ingredients": {"type": "array", "minItems": 1, "maxItems": 5, "items": {
                "type": "object",
                "properties": {"name": _STR, "amount": {"type": "number", "minimum": 0, "maximum": 5000},
                               "unit": {"type": "string", "enum": ["g", "ml", "piece", "tbsp", "tsp"]}},
                "required": ["name", "amount", "unit"], "additionalProperties": False}},
            "vegetarian": {"type": "boolean"},
        },
        "required": ["name", "servings", "ingredients"], "additionalProperties": False,
    },
    "weather": {
        "type": "object",
        "properties": {
            "city": _STR, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "temperature": {"type": "number", "minimum": -90, "maximum": 60},
            "forecast": {"type": "array", "maxItems": 3, "items": {
                "type": "object",
                "properties": {"day": {"type": "string", "enum": ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]},
                               "high": {"type": "number", "minimum": -90, "maximum": 60},
                               "low": {"type": "number", "minimum": -90, "maximum": 60}},
                "required": ["day", "high", "low"], "additionalProperties": False}},
        },
        "required": ["city", "unit", "temperature"], "additionalProperties": False,
    },
    "book": {  # the shape pydantic's model_json_schema() produces: $defs, $ref, a nullable Optional, titles
        "$defs": {"Author": {"type": "object", "title": "Author",
                             "properties": {"name": {"type": "string", "title": "Name", "maxLength": 40},
                                            "born": {"anyOf": [{"type": "integer", "minimum": 1000, "maximum": 2025},
                                                               {"type": "null"}], "title": "Born"}},
                             "required": ["name", "born"], "additionalProperties": False}},
        "type": "object", "title": "Book",
        "properties": {"title": {"type": "string", "title": "Title", "maxLength": 60},
                       "author": {"$ref": "#/$defs/Author"},
                       "year": {"type": "integer", "title": "Year", "minimum": 1450, "maximum": 2030},
                       "genres": {"type": "array", "title": "Genres", "maxItems": 3,
                                  "items": {"type": "string",
                                            "enum": ["fiction", "history", "science", "poetry", "biography"]}}},
        "required": ["title", "author", "year", "genres"], "additionalProperties": False,
    },
    "ticket": {
        "type": "object",
        "properties": {"label": {"type": "string", "enum": ["bug", "feature", "question"]},
                       "confidence": {"type": "number", "minimum": 0, "maximum": 1},
                       "reasons": {"type": "array", "items": {"type": "string", "maxLength": 80},
                                   "minItems": 1, "maxItems": 3}},
        "required": ["label", "confidence", "reasons"], "additionalProperties": False,
    },
    "company": {
        "type": "object",
        "properties": {
            "company": {"type": "object", "properties": {
                "name": _STR, "founded": {"type": "integer", "minimum": 1800, "maximum": 2025},
                "employees": {"type": "array", "minItems": 1, "maxItems": 3, "items": {
                    "type": "object",
                    "properties": {"name": _STR, "role": {"type": "string", "enum": ["engineer", "manager", "sales"]},
                                   "remote": {"type": "boolean"}},
                    "required": ["name", "role"], "additionalProperties": False}}},
                "required": ["name", "employees"], "additionalProperties": False},
        },
        "required": ["company"], "additionalProperties": False,
    },
}

PROMPTS: dict[str, list[str]] = {
    "person": ["Maria Lopez is 34 years old; write to her at maria.lopez@example.com.",
               "The new intern, Tom Becker, just turned 19.",
               "Record our oldest customer: Edith Shaw, aged 97, no email on file."],
    "address": ["Ship it to 221 Baker Street, 10001 New York, United States.",
                "Our Berlin office: Torstrasse 49, 10119 Berlin, Germany.",
                "Send the invoice to 12 Rue de Rivoli, 75001 Paris, France."],
    "order": ["Order 5512: two notebooks at 3.50 each and one pen at 1.20, express shipping.",
              "Order number 77: a single laptop for 999.99, normal shipping.",
              "Order 3 has three coffee mugs at 8 dollars each."],
    "event": ["Team offsite on 2026-05-14 in the office, with Ana, Ben and Chloe.",
              "The product launch webinar happens online on 2026-09-01.",
              "Book club meets on 2026-02-20 at the library; only Dave is confirmed."],
    "review": ["Review: 'Fantastic headphones, the sound is crisp and the battery lasts forever.'",
               "Review: 'It works, nothing special. Delivery was on time.'",
               "Review: 'Broke after two days and support never answered.'"],
    "recipe": ["Pancakes for 4: 200 g flour, 300 ml milk, 2 eggs and a tbsp of sugar.",
               "A simple tomato salad for two people: 4 tomatoes, 1 tbsp olive oil, 1 tsp salt.",
               "Chicken soup serving 6 with 1000 g chicken, 2000 ml water and 3 carrots."],
    "weather": ["Madrid is at 31 degrees Celsius today; tomorrow (Tue) high 33, low 20.",
                "It is 45 F in Boston right now.",
                "Oslo: -3 celsius now, Wednesday high 1 low -6, Thursday high 2 low -4."],
    "book": ["'One Hundred Years of Solitude' by Gabriel Garcia Marquez (born 1927), published 1967, a novel.",
             "'A Brief History of Time', Stephen Hawking, 1988, popular science.",
             "'Leaves of Grass' by Walt Whitman, poetry, first published in 1855."],
    "ticket": ["Issue: 'The app crashes when I upload a photo larger than 10 MB.'",
               "Issue: 'Could you add a dark mode to the settings page?'",
               "Issue: 'How do I export my data to CSV?'"],
    "company": ["Acme Robotics, founded 1998, employs Jane (engineer, remote) and Raj (manager).",
                "Blue Fin Foods has one employee so far: Lena, who does sales.",
                "Northwind was founded in 2011; its staff are Omar (engineer) and Kim (sales, remote)."],
}

EXAMPLES: dict[str, dict] = {
    "person": {"name": "Maria Lopez", "age": 34, "email": "maria.lopez@example.com"},
    "address": {"street": "Torstrasse 49", "city": "Berlin", "zip": "10119", "country": "DE"},
    "order": {"order_id": 5512, "items": [{"product": "notebook", "quantity": 2, "price": 3.5},
                                          {"product": "pen", "quantity": 1, "price": 1.2}], "express": True},
    "event": {"title": "Team offsite", "date": "2026-05-14", "attendees": ["Ana", "Ben", "Chloe"], "online": False},
    "review": {"rating": 5, "sentiment": "positive", "summary": "Great sound and battery life."},
    "recipe": {"name": "Pancakes", "servings": 4, "ingredients": [{"name": "flour", "amount": 200, "unit": "g"},
                                                                  {"name": "milk", "amount": 300, "unit": "ml"}]},
    "weather": {"city": "Madrid", "unit": "celsius", "temperature": 31,
                "forecast": [{"day": "Tue", "high": 33, "low": 20}]},
    "book": {"title": "A Brief History of Time", "author": {"name": "Stephen Hawking", "born": None}, "year": 1988,
             "genres": ["science"]},
    "ticket": {"label": "bug", "confidence": 0.9, "reasons": ["the app crashes"]},
    "company": {"company": {"name": "Acme Robotics", "founded": 1998,
                            "employees": [{"name": "Jane", "role": "engineer", "remote": True}]}},
}

SYSTEM = "Reply with one JSON object that matches this JSON Schema, and nothing else:\n{schema}"


def messages(schema_name: str, prompt: str) -> list[dict]:
    """The chat both arms send: the schema in the system message, so the unconstrained arm is told the same."""
    schema = json.dumps(SCHEMAS[schema_name], separators=(",", ":"))
    return [{"role": "system", "content": SYSTEM.format(schema=schema)}, {"role": "user", "content": prompt}]


def broken(schema_name: str) -> list[dict]:
    """Instances that must fail validation: a required key dropped, a value of the wrong type, an extra key."""
    example, schema = EXAMPLES[schema_name], SCHEMAS[schema_name]
    out = []
    missing = copy.deepcopy(example)
    missing.pop(schema["required"][0])
    out.append(missing)
    wrong_type = copy.deepcopy(example)
    wrong_type[schema["required"][0]] = [1, 2]
    out.append(wrong_type)
    extra = copy.deepcopy(example)
    extra["unexpected_key"] = 1
    out.append(extra)
    return out
