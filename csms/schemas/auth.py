from marshmallow import Schema, fields, validate


class Credentials(Schema):
    email = fields.String(required=True, validate=validate.Length(min=3, max=254))
    password = fields.String(required=True, validate=validate.Length(min=1, max=256), load_only=True)


class Registration(Credentials):
    password = fields.String(required=True, validate=validate.Length(min=8, max=256), load_only=True)


class Token(Schema):
    access_token = fields.String()
    token_type = fields.String()
    expires_in = fields.Integer()
    user_id = fields.Integer(data_key="userId")
    role = fields.String()
